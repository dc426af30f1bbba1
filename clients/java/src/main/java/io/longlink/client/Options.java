package io.longlink.client;

import java.io.IOException;
import java.io.InputStream;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.NoSuchAlgorithmException;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.function.Supplier;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

/**
 * How a {@link Client} connects. A token (or tokens) and an address (or
 * dispatch URLs) are required; everything else has a default.
 */
public final class Options {
    String address = "";
    List<String> dispatchUrls = new ArrayList<>();
    List<String> tokens = new ArrayList<>();
    SSLSocketFactory tls;
    long heartbeatSeconds;
    SeqStore seqStore = new MemorySeqStore();
    TokenSource tokenSource;
    Listener listener = new Listener() {};
    Executor executor;
    Supplier<String> network = () -> "unknown";
    long minBackoffMs = 500, maxBackoffMs = 30_000;
    int connectTimeoutMs = 10_000;
    long requestTimeoutMs = 10_000, writeTimeoutMs = 10_000, ackDelayMs = 100, statsIntervalMs = 180_000;
    int queueFrames = 1024;
    int maxFrameBytes = Frame.MAX_FRAME;

    /** The gateway's host:port; without it, every (re)connect asks dispatch. */
    public Options address(String hostPort) {
        this.address = hostPort;
        return this;
    }

    /**
     * API base URLs (http://host:port) whose /v1/dispatch names the gateway,
     * asked in turn when one fails; the one that answered is asked first
     * the next time.
     */
    public Options dispatch(String... urls) {
        this.dispatchUrls = new ArrayList<>(Arrays.asList(urls));
        return this;
    }

    /** The device token (a JWT from the app's backend). */
    public Options token(String token) {
        return tokens(token);
    }

    /** One token per app, all naming this device: one connection, several apps. */
    public Options tokens(String... tokens) {
        this.tokens = new ArrayList<>(Arrays.asList(tokens));
        return this;
    }

    /** TLS with the system's trusted CAs; dispatch then picks "tls" endpoints. */
    public Options tls() {
        try {
            return tls(SSLContext.getDefault().getSocketFactory());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("longlink: no TLS here", e);
        }
    }

    /** TLS with the given socket factory (see {@link #trusting}); also used for an https dispatch URL. */
    public Options tls(SSLSocketFactory factory) {
        this.tls = factory;
        return this;
    }

    /** A socket factory that trusts only the CA certificates (PEM or DER) in ca: a private CA's, or a self-signed one. */
    public static SSLSocketFactory trusting(InputStream ca) throws IOException, GeneralSecurityException {
        return context(ca).getSocketFactory();
    }

    static SSLContext context(InputStream ca) throws IOException, GeneralSecurityException {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        int i = 0;
        for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(ca)) ks.setCertificateEntry("ca" + i++, c);
        if (i == 0) throw new GeneralSecurityException("longlink: no certificate in the CA file");
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    /** The heartbeat to propose, in seconds; the server clamps it. 0 lets the server choose. */
    public Options heartbeatSeconds(long seconds) {
        this.heartbeatSeconds = seconds;
        return this;
    }

    /** Where each app's last acked seq is kept (default: in memory). */
    public Options seqStore(SeqStore store) {
        this.seqStore = store;
        return this;
    }

    /** Gives fresh tokens: before expiry (refresh), and after 4001 or 4011 (which then do not stop the client). */
    public Options tokenSource(TokenSource source) {
        this.tokenSource = source;
        return this;
    }

    /** Receives the client's events. */
    public Options listener(Listener listener) {
        this.listener = listener;
        return this;
    }

    /**
     * Runs the listener and completes the futures; it must run tasks one at
     * a time, in order (Android: the main thread's executor). Default: a
     * thread of the client's own.
     */
    public Options executor(Executor executor) {
        this.executor = executor;
        return this;
    }

    /** Says what network the device is on now ("wifi", "cellular", "unknown"), for the stats. */
    public Options network(Supplier<String> network) {
        this.network = network;
        return this;
    }

    /** The wait between reconnects doubles per failed attempt from min to max, with jitter (default 500 ms, 30 s). */
    public Options backoffMs(long min, long max) {
        this.minBackoffMs = min;
        this.maxBackoffMs = max;
        return this;
    }

    /** Bounds one connect and login, and the answer to a ping after reconnectNow() (default 10 s). */
    public Options connectTimeoutMs(int ms) {
        this.connectTimeoutMs = ms;
        return this;
    }

    /** Bounds the answer to up, join, leave and refresh (default 10 s). */
    public Options requestTimeoutMs(long ms) {
        this.requestTimeoutMs = ms;
        return this;
    }

    /** A write that takes longer ends the connection (default 10 s). */
    public Options writeTimeoutMs(long ms) {
        this.writeTimeoutMs = ms;
        return this;
    }

    /** How long handled stored messages wait to be acked together (default 100 ms; 64 messages send at once). */
    public Options ackDelayMs(long ms) {
        this.ackDelayMs = ms;
        return this;
    }

    /**
     * How often the client sends what it measured (default 3 minutes; 0:
     * never): with the first heartbeat's ping after that long, so that an
     * idle device wakes once per heartbeat and no more.
     */
    public Options statsIntervalMs(long ms) {
        this.statsIntervalMs = ms;
        return this;
    }

    /** Frames waiting to be written, at most (default 1024): past it, requests fail and acks wait for the next batch. */
    public Options queueFrames(int frames) {
        this.queueFrames = frames;
        return this;
    }

    Options check() {
        if (tokens.isEmpty()) throw new IllegalArgumentException("longlink: a token or tokens are required");
        if (address.isEmpty() && dispatchUrls.isEmpty()) {
            throw new IllegalArgumentException("longlink: an address or dispatch URLs are required");
        }
        if (minBackoffMs <= 0 || maxBackoffMs < minBackoffMs) throw new IllegalArgumentException("longlink: bad backoff");
        if (connectTimeoutMs <= 0 || requestTimeoutMs <= 0 || writeTimeoutMs <= 0 || ackDelayMs < 0 || queueFrames <= 0) {
            throw new IllegalArgumentException("longlink: timeouts and the queue must be positive");
        }
        return this;
    }
}
