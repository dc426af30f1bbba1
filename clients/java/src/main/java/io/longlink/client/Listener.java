package io.longlink.client;

/**
 * Receives what happens to a client, on the executor the app chose (never
 * on the socket's thread). Every method has an empty default: override
 * those you need.
 */
public interface Listener {
    /** A login succeeded (the first, or after a reconnect). */
    default void onConnected(Welcome welcome) {}

    /** A connection ended; the client reconnects unless the error is final. */
    default void onDisconnected(LonglinkException why) {}

    /**
     * A message. A stored one (seq or bseq &gt; 0) is acked once this returns;
     * one seen before (a replay after a lost ack) is not handed over again.
     */
    default void onPush(Push push) {}

    /** The app withdrew message id: hide it if it is shown (it may be one this device never got). */
    default void onRecall(String app, String id) {}

    /** The server ended this device's session in one app of several (4003, 4008); the others go on. */
    default void onAppEnded(String app, LonglinkException why) {}

    /** A non-fatal error: a refused join, a failed refresh, a seq store that failed. */
    default void onError(LonglinkException error) {}

    /** The client stopped: closed, or a final code (4001 without a token source, 4003, 4008). */
    default void onClosed(LonglinkException why) {}
}
