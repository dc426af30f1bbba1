package io.longlink.client;

/**
 * Gives a fresh device token for an app, from the app's backend. The client
 * calls it at four fifths of a token's life (and refreshes the live
 * connection), and before reconnecting after 4001 or 4011. It runs on the
 * client's own thread: it may block on a network call.
 */
@FunctionalInterface
public interface TokenSource {
    String token(String app) throws Exception;
}
