package io.longlink.client;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URL;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;

/**
 * A device's connection to longlink over the native binary protocol (TCP,
 * or TLS). It finds the gateway through dispatch, logs in (one app or
 * several), keeps the granted heartbeat, reconnects with jittered doubling
 * backoff, resumes stored messages after the last seq it acked (kept in a
 * {@link SeqStore}), acks them in batches, drops repeats by id, refreshes
 * tokens through a {@link TokenSource}, follows a draining node's redirect
 * and sends client-quality stats. Safe for use from any thread.
 *
 * <p>Threads: one reads the connection (and reconnects), one writes it,
 * one runs the timers; the listener runs on the executor given to the
 * {@link Options}, which must run tasks one at a time, in order (a single
 * thread, or Android's main thread).
 */
public final class Client implements AutoCloseable {
    /** What the client is doing. */
    public enum State { IDLE, CONNECTING, CONNECTED, DISCONNECTED, CLOSED }

    private static final int RECENT_IDS = 4096; // message ids remembered to drop repeats
    private static final int MAX_RTTS = 64; // ping samples in one stats op
    private static final int ACK_BATCH = 64; // handled stored messages that flush the acks at once
    private static final byte[] STOP_WRITER = new byte[0];

    private final Options o;
    private final Listener listener;
    private final ExecutorService ownEvents; // the default executor, shut down at close; null when the app gave one
    private final java.util.concurrent.Executor events;
    private final ScheduledExecutorService timer;
    private final AtomicLong nextRef = new AtomicLong();

    private final Object lock = new Object();
    private final Object storeLock = new Object(); // taken before lock, never after
    private State state = State.IDLE; // guarded by lock
    private List<Login> logins; // guarded by lock: what each login sends; an ended app leaves it
    private final Map<String, Long> acked = new HashMap<>(); // guarded by lock: app -> last seq acked and kept
    private final Map<String, Long> ackedBSeq = new HashMap<>(); // guarded by lock: app -> last bseq acked
    private final Map<String, long[]> toAck = new LinkedHashMap<>(); // guarded by lock: app -> {seq, bseq} to ack
    private int ackCount; // guarded by lock
    private ScheduledFuture<?> ackTimer; // guarded by lock
    private final Set<String> groups = new LinkedHashSet<>(); // guarded by lock: "app\0group", joined again after a reconnect
    private final Map<String, CompletableFuture<Frame>> pending = new HashMap<>(); // guarded by lock: by ref
    private Conn conn; // guarded by lock: the live connection
    private String movedTo = ""; // guarded by lock: where a redirect said to go, until a connect succeeds
    private int dispatchFrom; // guarded by lock: the dispatch URL that answered last
    private boolean wake; // guarded by lock: reconnectNow() while disconnected: the backoff ends at once
    private Welcome welcome; // guarded by lock
    private LonglinkException closedReason; // guarded by lock
    private final List<Long> rtts = new ArrayList<>(); // guarded by lock
    private long pingAt, connectMs, connectFailures; // guarded by lock
    private long statsAt = System.currentTimeMillis(); // guarded by lock: when the last stats went

    private final LinkedHashMap<String, Boolean> seen = new LinkedHashMap<String, Boolean>(16, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) {
            return size() > RECENT_IDS;
        }
    }; // guarded by itself: the reading thread's, and markShown's

    /** Makes a client; {@link #connect()} starts it. */
    public Client(Options options) {
        this.o = options.check();
        this.listener = o.listener;
        if (o.executor == null) {
            ownEvents = Executors.newSingleThreadExecutor(daemon("longlink-events"));
            events = ownEvents;
        } else {
            ownEvents = null;
            events = o.executor;
        }
        timer = Executors.newSingleThreadScheduledExecutor(daemon("longlink-timer"));
        List<Login> ls = new ArrayList<>();
        for (String t : o.tokens) ls.add(Login.parse(t));
        logins = ls;
    }

    /** The client's state. */
    public State state() {
        synchronized (lock) {
            return state;
        }
    }

    /** What the server granted at the latest login, or null. */
    public Welcome welcome() {
        synchronized (lock) {
            return welcome;
        }
    }

    /** Why the client stopped, or null while it runs. */
    public LonglinkException closedReason() {
        synchronized (lock) {
            return closedReason;
        }
    }

    /** The highest stored seq of app handled by the listener and acked (the first app for null). */
    public long lastSeq(String app) {
        synchronized (lock) {
            return acked.getOrDefault(app == null ? firstApp() : app, 0L);
        }
    }

    /**
     * Connects and logs in once, waiting for the welcome; then the client
     * stays connected in the background until {@link #close()} or a final
     * code. Throws if the first login fails (the client is then closed).
     */
    public Welcome connect() throws LonglinkException {
        synchronized (lock) {
            if (state != State.IDLE) throw new IllegalStateException("longlink: connect() was called already");
            state = State.CONNECTING;
        }
        try {
            for (Login l : logins) {
                long seq = o.seqStore.get(l.app), bseq = o.seqStore.getBSeq(l.app);
                synchronized (lock) {
                    acked.put(l.app, seq);
                    ackedBSeq.put(l.app, bseq);
                }
            }
        } catch (IOException e) {
            LonglinkException why = new LonglinkException("seq store: " + e.getMessage(), e);
            stop(why, false);
            throw why;
        }
        Conn c;
        try {
            c = connectOnce();
        } catch (LonglinkException e) {
            stop(e, false);
            throw e;
        }
        Thread t = new Thread(() -> run(c), "longlink-reader");
        t.setDaemon(true);
        t.start();
        return c.welcome;
    }

    /**
     * Tells the client the network changed (Android: a ConnectivityManager
     * callback): a client waiting to reconnect tries at once, from the
     * shortest backoff; a connected one pings, and replaces the connection
     * if no answer comes within the connect timeout.
     */
    public void reconnectNow() {
        Conn c;
        synchronized (lock) {
            if (state == State.DISCONNECTED) {
                wake = true;
                lock.notifyAll();
                return;
            }
            if (state != State.CONNECTED) return;
            c = conn;
        }
        long probeAt = System.currentTimeMillis();
        if (!send(new Frame(Frame.PING))) return;
        c.schedule(later(() -> {
            if (c.lastHeard < probeAt) c.fail(new LonglinkException(0, "no answer after a network change", ""));
        }, o.connectTimeoutMs));
    }

    /** Ends the connection and stops reconnecting; acks waiting in the batch are sent first. */
    @Override
    public void close() {
        flushAcks();
        stop(new LonglinkException(0, "closed by the client", ""), true);
    }

    /** Sends data to the first app's backend for biz; completes with the webhook's answer. */
    public CompletableFuture<UpReply> up(String biz, byte[] data) {
        return up(null, biz, data);
    }

    /** Sends data to app's backend for biz; completes with the webhook's answer. */
    public CompletableFuture<UpReply> up(String app, String biz, byte[] data) {
        Frame f = new Frame(Frame.UP);
        f.app = appOf(app);
        f.biz = biz;
        f.data = data; // encoded before up returns: no copy kept
        return request(f).thenApply(r -> new UpReply((int) r.status, r.data));
    }

    /** Joins a group of the first app (allowed by the token's groups claim); joined again after every reconnect. */
    public CompletableFuture<Void> join(String group) {
        return join(null, group);
    }

    /** Joins a group of app; joined again after every reconnect. */
    public CompletableFuture<Void> join(String app, String group) {
        Frame f = groupOp(Frame.JOIN, appOf(app), group);
        return request(f).thenAccept(r -> {
            synchronized (lock) {
                groups.add(f.app + "\0" + group);
            }
        });
    }

    /**
     * Records that the stored message id was shown already, through an OS push notification (its
     * data key {@code longlink_id}): when the socket brings it, it is acked and not handed to the
     * listener. Call it from the notification's handler, before or after {@link #connect()}.
     */
    public void markShown(String id) {
        synchronized (seen) {
            seen.put(id, Boolean.TRUE);
        }
    }

    /**
     * Registers this device's OS push token of a vendor ("fcm", "apns", "hms", ...) in the first
     * app; the future completes once the server keeps it. An empty token removes it. Call it when
     * the OS gives the app a token (FirebaseMessagingService.onNewToken, at each start).
     */
    public CompletableFuture<Void> setVendorToken(String vendor, String token) {
        return setVendorToken(null, vendor, token);
    }

    /** Registers this device's OS push token of a vendor in app (empty: removes it). */
    public CompletableFuture<Void> setVendorToken(String app, String vendor, String token) {
        Frame f = new Frame(Frame.VENDOR_TOKEN);
        f.app = appOf(app);
        f.vendor = vendor;
        f.token = token;
        return request(f).thenApply(r -> null);
    }

    /** Leaves a group of the first app. */
    public CompletableFuture<Void> leave(String group) {
        return leave(null, group);
    }

    /** Leaves a group of app. */
    public CompletableFuture<Void> leave(String app, String group) {
        Frame f = groupOp(Frame.LEAVE, appOf(app), group);
        synchronized (lock) {
            groups.remove(f.app + "\0" + group);
        }
        return request(f).thenApply(r -> null);
    }

    private static Frame groupOp(int op, String app, String group) {
        Frame f = new Frame(op);
        f.app = app;
        f.group = group;
        return f;
    }

    private String appOf(String app) {
        if (app != null) return app;
        synchronized (lock) {
            return firstApp();
        }
    }

    private String firstApp() {
        return logins.isEmpty() ? "" : logins.get(0).app;
    }

    // --- connecting ---

    private Conn connectOnce() throws LonglinkException {
        long start = System.currentTimeMillis();
        try {
            Conn c = dialLogin();
            synchronized (lock) {
                connectMs = Math.max(System.currentTimeMillis() - start, 1);
                movedTo = "";
            }
            live(c);
            return c;
        } catch (LonglinkException e) {
            synchronized (lock) {
                connectFailures++;
            }
            throw e;
        }
    }

    // dialLogin opens a socket, logs in and waits for the welcome, within the connect timeout.
    private Conn dialLogin() throws LonglinkException {
        String address;
        Frame login = new Frame(Frame.LOGIN);
        synchronized (lock) {
            address = movedTo.isEmpty() ? o.address : movedTo;
            for (Login l : logins) {
                login.tokens.add(l.token);
                login.lastSeqs.add(acked.getOrDefault(l.app, 0L));
                login.lastBseqs.add(ackedBSeq.getOrDefault(l.app, 0L)); // stored broadcasts by bseq
            }
        }
        if (address == null || address.isEmpty()) address = dispatch();
        login.heartbeat = o.heartbeatSeconds;
        Socket s = null;
        try {
            s = open(address);
            s.setSoTimeout(o.connectTimeoutMs);
            OutputStream out = s.getOutputStream();
            out.write(login.encode());
            out.flush();
            InputStream in = new BufferedInputStream(s.getInputStream());
            for (;;) {
                Frame f = Frame.read(in, o.maxFrameBytes);
                if (f.op == Frame.ERROR) throw new LonglinkException((int) f.code, f.reason, f.app);
                if (f.op == Frame.REDIRECT) {
                    redirected(f.endpoints);
                    continue;
                }
                if (f.op != Frame.WELCOME) throw new LonglinkException(0, "got op " + f.op + " before welcome", "");
                long hb = f.heartbeat > 0 ? f.heartbeat : 30;
                s.setSoTimeout((int) Math.min(3 * hb * 1000, Integer.MAX_VALUE)); // silent for 3 heartbeats: dead
                return new Conn(s, in, out, new Welcome(f.device, f.apps, hb));
            }
        } catch (IOException e) {
            closeQuietly(s);
            String what = e instanceof SocketTimeoutException ? "connect timed out" : "cannot connect to " + address;
            throw new LonglinkException(what + ": " + e.getMessage(), e);
        } catch (LonglinkException e) {
            closeQuietly(s);
            throw e;
        }
    }

    private Socket open(String address) throws IOException {
        int colon = address.lastIndexOf(':');
        if (colon < 0) throw new IOException("address " + address + " has no port");
        String host = address.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(address.substring(colon + 1));
        Socket s = new Socket();
        try {
            s.connect(new InetSocketAddress(host, port), o.connectTimeoutMs);
            s.setTcpNoDelay(true);
            if (o.tls == null) return s;
            SSLSocket t = (SSLSocket) o.tls.createSocket(s, host, port, true);
            SSLParameters p = t.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS"); // the certificate must name the host
            t.setSSLParameters(p);
            t.setSoTimeout(o.connectTimeoutMs);
            t.startHandshake();
            return t;
        } catch (IOException | RuntimeException e) {
            closeQuietly(s);
            throw e;
        }
    }

    // dispatch asks the API where to connect: the first endpoint of this
    // client's transport. Each dispatch URL is asked in turn, from the one
    // that answered last, until one answers.
    private String dispatch() throws LonglinkException {
        int from;
        Login l;
        synchronized (lock) {
            from = dispatchFrom;
            l = logins.get(0);
        }
        List<String> errors = new ArrayList<>();
        for (int i = 0; i < o.dispatchUrls.size(); i++) {
            int at = (from + i) % o.dispatchUrls.size();
            String base = o.dispatchUrls.get(at);
            try {
                String address = dispatchAt(base, l);
                synchronized (lock) {
                    dispatchFrom = at;
                }
                return address;
            } catch (IOException | RuntimeException e) {
                errors.add(base + ": " + e.getMessage());
            }
        }
        throw new LonglinkException(0, "dispatch: " + String.join("; ", errors), "");
    }

    private String dispatchAt(String base, Login l) throws IOException {
        URL u = new URL(base.replaceAll("/+$", "") + "/v1/dispatch?app=" + URLEncoder.encode(l.app, "UTF-8")
                + "&device=" + URLEncoder.encode(l.device, "UTF-8"));
        HttpURLConnection h = (HttpURLConnection) u.openConnection();
        if (h instanceof HttpsURLConnection && o.tls != null) ((HttpsURLConnection) h).setSSLSocketFactory(o.tls);
        h.setConnectTimeout(o.connectTimeoutMs);
        h.setReadTimeout(o.connectTimeoutMs);
        try {
            int status = h.getResponseCode();
            InputStream in = status < 400 ? h.getInputStream() : h.getErrorStream();
            String body = in == null ? "" : new String(readAll(in), StandardCharsets.UTF_8);
            if (status != 200) throw new IOException(status + " " + body.trim());
            Object endpoints = Json.object(body).get("endpoints");
            if (endpoints instanceof List) {
                for (Object e : (List<?>) endpoints) {
                    if (e instanceof Map && kind().equals(((Map<?, ?>) e).get("transport"))) {
                        Object a = ((Map<?, ?>) e).get("address");
                        if (a instanceof String) return (String) a;
                    }
                }
            }
            throw new IOException("no " + kind() + " endpoint offered");
        } finally {
            h.disconnect();
        }
    }

    // kind is the endpoint transport this client takes.
    private String kind() {
        return o.tls != null ? "tls" : "tcp";
    }

    private void redirected(List<String> endpoints) {
        String prefix = kind() + " ";
        for (String e : endpoints) {
            if (e.startsWith(prefix)) {
                synchronized (lock) {
                    movedTo = e.substring(prefix.length());
                }
                return;
            }
        }
    }

    // --- a live connection ---

    private void live(Conn c) {
        List<String> rejoin;
        synchronized (lock) {
            if (state == State.CLOSED) {
                c.close(false);
                return;
            }
            state = State.CONNECTED;
            wake = false;
            conn = c;
            welcome = c.welcome;
            rejoin = new ArrayList<>(groups);
        }
        c.startWriter();
        long hb = c.welcome.heartbeatSeconds() * 1000;
        c.schedule(every(() -> tick(c), hb));
        if (o.tokenSource != null) scheduleRefresh(c);
        for (String key : rejoin) {
            String[] ag = key.split("\0", 2);
            request(groupOp(Frame.JOIN, ag[0], ag[1])).whenComplete((r, err) -> {
                if (err == null) return;
                LonglinkException e = cause(err);
                if (e.code() == Code.NOT_ALLOWED) {
                    synchronized (lock) {
                        groups.remove(key);
                    }
                }
                listener.onError(e);
            });
        }
        Welcome w = c.welcome;
        events.execute(() -> listener.onConnected(w));
    }

    // tick runs once per heartbeat: it ends a connection whose write is
    // stuck, pings, and sends the stats when they are due, with the ping: an
    // idle device wakes once per heartbeat, not once more per stats.
    private void tick(Conn c) {
        long now = System.currentTimeMillis();
        long started = c.writeStarted;
        if (started != 0 && now - started > o.writeTimeoutMs) {
            c.fail(new LonglinkException(0, "write timed out", ""));
            return;
        }
        boolean due;
        synchronized (lock) {
            due = o.statsIntervalMs > 0 && now - statsAt >= o.statsIntervalMs;
        }
        String network = due ? o.network.get() : ""; // the app's code: not under the lock
        synchronized (lock) {
            pingAt = now;
            sendLocked(new Frame(Frame.PING));
            if (due) sendStatsLocked(now, network);
        }
    }

    // run reads the live connection until it ends, then reconnects, until
    // the client stops.
    private void run(Conn c) {
        for (;;) {
            LonglinkException why = read(c);
            if (!lost(c, why)) return;
            c = reconnect(why);
            if (c == null) return;
        }
    }

    // read reads and handles frames until the connection ends, and returns why.
    private LonglinkException read(Conn c) {
        try {
            for (;;) {
                Frame f = Frame.read(c.in, o.maxFrameBytes);
                c.lastHeard = System.currentTimeMillis();
                handle(c, f);
            }
        } catch (SocketTimeoutException e) {
            return c.why(new LonglinkException(Code.HEARTBEAT_TIMEOUT, "no answer from the server", ""));
        } catch (EOFException e) {
            return c.why(new LonglinkException(0, "connection closed", ""));
        } catch (IOException e) {
            return c.why(new LonglinkException(0, "connection lost: " + e.getMessage(), ""));
        }
    }

    private void handle(Conn c, Frame f) {
        switch (f.op) {
            case Frame.PUSH:
                push(f);
                return;
            case Frame.RECALL:
                events.execute(() -> listener.onRecall(f.app, f.id));
                return;
            case Frame.PONG:
                synchronized (lock) {
                    if (pingAt != 0 && rtts.size() < MAX_RTTS) rtts.add(System.currentTimeMillis() - pingAt);
                    pingAt = 0;
                }
                return;
            case Frame.OK:
            case Frame.UP_REPLY:
                answer(f);
                return;
            case Frame.REDIRECT:
                redirected(f.endpoints);
                return;
            case Frame.ERROR:
                error(c, f);
                return;
            default: // a newer server's op: ignored
        }
    }

    private void error(Conn c, Frame f) {
        if (answer(f)) return;
        LonglinkException e = new LonglinkException((int) f.code, f.reason, f.app);
        if (!f.app.isEmpty() && (f.code == Code.REPLACED || f.code == Code.KICKED)) { // one app ended, the others go on
            boolean others;
            synchronized (lock) {
                logins.removeIf(l -> l.app.equals(f.app));
                others = !logins.isEmpty();
            }
            events.execute(() -> listener.onAppEnded(f.app, e));
            if (others) return;
        }
        if (f.code == Code.UPSTREAM_UNAVAILABLE || f.code == Code.NOT_ALLOWED || f.code == Code.RATE_LIMITED) {
            events.execute(() -> listener.onError(e)); // non-fatal: the connection stays
            return;
        }
        c.why(e); // why the server closes
    }

    // push hands a message to the listener unless it was handled already (a
    // stored message replayed after a lost ack: same id), then puts a stored
    // one in the ack batch. Seqs are not compared: the server's are the truth.
    private void push(Frame f) {
        Push p = new Push(f.app, f.id, f.seq, f.bseq, f.data);
        boolean repeat;
        synchronized (seen) {
            repeat = p.stored() && seen.put(f.id, Boolean.TRUE) != null;
        }
        events.execute(() -> {
            if (!repeat) {
                try {
                    listener.onPush(p);
                } catch (RuntimeException e) { // not acked: the next ack of the app, cumulative, covers it
                    listener.onError(new LonglinkException("the push listener threw: " + e, e));
                    return;
                }
            }
            if (p.stored()) ackLater(p);
        });
    }

    private void ackLater(Push p) {
        boolean now;
        synchronized (lock) {
            long[] batch = toAck.computeIfAbsent(p.app(), a -> new long[2]);
            if (p.seq() > 0) batch[0] = p.seq();
            else batch[1] = p.bseq();
            now = ++ackCount >= ACK_BATCH;
            if (!now && ackTimer == null && state != State.CLOSED) {
                ackTimer = later(this::flushAcks, o.ackDelayMs);
            }
        }
        if (now) flushAcks();
    }

    // flushAcks sends one cumulative ack per app, then keeps each app's seq
    // and bseq in the seq store: the next login resumes after them. Acks that cannot be
    // sent (the connection is gone) are dropped: those messages come again
    // after the reconnect and are recognised by id.
    private void flushAcks() {
        synchronized (storeLock) { // flushes one at a time: the store never goes back to an older seq
            flushAcksLocked();
        }
    }

    private void flushAcksLocked() {
        Map<String, long[]> keep = new LinkedHashMap<>(); // app -> {seq, bseq} acked
        synchronized (lock) {
            if (ackTimer != null) ackTimer.cancel(false);
            ackTimer = null;
            ackCount = 0;
            for (Map.Entry<String, long[]> e : toAck.entrySet()) {
                Frame ack = new Frame(Frame.ACK);
                ack.app = e.getKey();
                ack.seq = e.getValue()[0];
                ack.bseq = e.getValue()[1];
                if (!sendLocked(ack)) continue;
                if (ack.bseq > 0) ackedBSeq.put(ack.app, ack.bseq);
                if (ack.seq > 0) acked.put(ack.app, ack.seq);
                keep.put(ack.app, new long[] {ack.seq, ack.bseq});
            }
            toAck.clear();
        }
        for (Map.Entry<String, long[]> e : keep.entrySet()) {
            try {
                if (e.getValue()[0] > 0) o.seqStore.set(e.getKey(), e.getValue()[0]);
                if (e.getValue()[1] > 0) o.seqStore.setBSeq(e.getKey(), e.getValue()[1]);
            } catch (IOException | RuntimeException err) {
                events.execute(() -> listener.onError(new LonglinkException("seq store: " + err.getMessage(), err)));
            }
        }
    }

    private void sendStatsLocked(long now, String network) {
        if (rtts.isEmpty() && connectMs == 0 && connectFailures == 0) return;
        Frame f = new Frame(Frame.STATS);
        f.network = network;
        f.transport = kind();
        f.rttMs.addAll(rtts);
        f.connectMs = connectMs;
        f.connectFailures = connectFailures;
        if (!sendLocked(f)) return;
        statsAt = now;
        rtts.clear();
        connectMs = 0;
        connectFailures = 0;
    }

    private boolean send(Frame f) {
        synchronized (lock) {
            return sendLocked(f);
        }
    }

    private boolean sendLocked(Frame f) {
        return state == State.CONNECTED && conn != null && conn.queue.offer(f.encode());
    }

    private CompletableFuture<Frame> request(Frame f) {
        CompletableFuture<Frame> fut = new CompletableFuture<>();
        f.ref = Long.toString(nextRef.incrementAndGet(), 36);
        synchronized (lock) {
            if (state != State.CONNECTED) {
                fut.completeExceptionally(new LonglinkException(0, "not connected", ""));
                return fut;
            }
            pending.put(f.ref, fut);
            if (!sendLocked(f)) {
                pending.remove(f.ref);
                fut.completeExceptionally(new LonglinkException(0, "the outgoing queue is full", ""));
                return fut;
            }
        }
        String ref = f.ref;
        int op = f.op;
        later(() -> {
            CompletableFuture<Frame> p;
            synchronized (lock) {
                p = pending.remove(ref);
            }
            if (p != null) events.execute(() -> p.completeExceptionally(new LonglinkException(0, "no answer to op " + op + " in time", "")));
        }, o.requestTimeoutMs);
        return fut;
    }

    // answer completes the request f answers, on the listener's executor, and
    // reports whether there was one.
    private boolean answer(Frame f) {
        CompletableFuture<Frame> p;
        synchronized (lock) {
            p = f.ref.isEmpty() ? null : pending.remove(f.ref);
        }
        if (p == null) return false;
        if (f.op == Frame.ERROR) {
            LonglinkException e = new LonglinkException((int) f.code, f.reason, f.app);
            events.execute(() -> p.completeExceptionally(e));
        } else {
            events.execute(() -> p.complete(f));
        }
        return true;
    }

    // --- losing a connection, reconnecting ---

    // lost ends c, tells the listener, and reports whether to reconnect.
    private boolean lost(Conn c, LonglinkException why) {
        List<CompletableFuture<Frame>> failed;
        synchronized (lock) {
            c.close(false);
            if (conn == c) conn = null;
            if (state == State.CLOSED) return false;
            state = State.DISCONNECTED;
            failed = new ArrayList<>(pending.values());
            pending.clear();
        }
        LonglinkException gone = new LonglinkException(0, "disconnected", "");
        events.execute(() -> {
            for (CompletableFuture<Frame> p : failed) p.completeExceptionally(gone);
            listener.onDisconnected(why);
        });
        if (isFinal(why.code())) {
            stop(why, false);
            return false;
        }
        return true;
    }

    // reconnect waits its backoff and connects again, until it succeeds
    // (the new connection) or the client stops (null).
    private Conn reconnect(LonglinkException why) {
        for (int attempt = 0;; attempt++) {
            int slept = sleep(backoff(attempt));
            if (slept == STOPPED) return null;
            if (slept == WOKEN) attempt = 0; // the network changed: from the shortest backoff again
            if (why.code() == Code.AUTH_FAILED || why.code() == Code.TOKEN_EXPIRED) freshTokens();
            try {
                return connectOnce();
            } catch (LonglinkException e) {
                if (state() == State.CLOSED) return null;
                if (isFinal(e.code())) {
                    stop(e, false);
                    return null;
                }
                why = e;
            }
        }
    }

    private boolean isFinal(int code) {
        if (code == Code.AUTH_FAILED) return o.tokenSource == null;
        return code == Code.REPLACED || code == Code.KICKED;
    }

    // backoff is the wait before reconnect attempt n: doubling from the
    // least up to the most, then a random point in its upper half, so that
    // devices cut off together do not come back together.
    private long backoff(int n) {
        long d = Math.min(o.minBackoffMs << Math.min(n, 30), o.maxBackoffMs);
        return d / 2 + ThreadLocalRandom.current().nextLong(d / 2 + 1);
    }

    private static final int SLEPT = 0, WOKEN = 1, STOPPED = 2;

    // sleep waits ms, and returns SLEPT; or less: WOKEN by reconnectNow()
    // (since the last sleep: one during a connect attempt counts), or
    // STOPPED when the client stops.
    private int sleep(long ms) {
        long end = System.currentTimeMillis() + ms;
        synchronized (lock) {
            for (;;) {
                if (state == State.CLOSED) return STOPPED;
                if (wake) {
                    wake = false;
                    return WOKEN;
                }
                long left = end - System.currentTimeMillis();
                if (left <= 0) return SLEPT;
                try {
                    lock.wait(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return STOPPED;
                }
            }
        }
    }

    private void stop(LonglinkException why, boolean byClient) {
        Conn c;
        boolean wasConnected;
        List<CompletableFuture<Frame>> failed;
        synchronized (lock) {
            if (state == State.CLOSED) return;
            wasConnected = state == State.CONNECTED;
            state = State.CLOSED;
            closedReason = why;
            c = conn;
            conn = null;
            if (ackTimer != null) ackTimer.cancel(false);
            failed = new ArrayList<>(pending.values());
            pending.clear();
            lock.notifyAll();
        }
        if (c != null) c.close(byClient);
        timer.shutdownNow();
        LonglinkException closed = new LonglinkException(0, "closed", "");
        events.execute(() -> {
            for (CompletableFuture<Frame> p : failed) p.completeExceptionally(closed);
            if (byClient && wasConnected) listener.onDisconnected(why);
            listener.onClosed(why);
        });
        if (ownEvents != null) ownEvents.shutdown(); // after the tasks queued
    }

    // --- tokens ---

    private void freshTokens() {
        if (o.tokenSource == null) return;
        List<Login> ls;
        synchronized (lock) {
            ls = new ArrayList<>(logins);
        }
        for (Login l : ls) {
            try {
                setToken(Login.parse(o.tokenSource.token(l.app)));
            } catch (Exception e) {
                events.execute(() -> listener.onError(new LonglinkException("token source: " + e.getMessage(), e)));
            }
        }
    }

    private void setToken(Login next) {
        synchronized (lock) {
            logins.replaceAll(l -> l.app.equals(next.app) ? next : l);
        }
    }

    // scheduleRefresh refreshes the earliest-expiring token of c at four
    // fifths of its life.
    private void scheduleRefresh(Conn c) {
        Login next = null;
        synchronized (lock) {
            for (Login l : logins) if (next == null || l.refreshAt() < next.refreshAt()) next = l;
        }
        if (next == null || c.closed) return;
        Login l = next;
        long in = Math.max(l.refreshAt() - System.currentTimeMillis(), 0);
        c.schedule(later(() -> refresh(c, l.app), in));
    }

    private void refresh(Conn c, String app) {
        try {
            Login l = Login.parse(o.tokenSource.token(app));
            Frame f = new Frame(Frame.REFRESH);
            f.token = l.token;
            request(f).get(o.requestTimeoutMs, TimeUnit.MILLISECONDS);
            setToken(l);
            scheduleRefresh(c);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Exception e) {
            if (c.closed) return;
            LonglinkException err = cause(e);
            events.execute(() -> listener.onError(err));
            c.schedule(later(() -> scheduleRefresh(c), 1000)); // not expired yet: try again soon
        }
    }

    private static LonglinkException cause(Throwable t) {
        while ((t instanceof java.util.concurrent.CompletionException || t instanceof java.util.concurrent.ExecutionException)
                && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof LonglinkException) return (LonglinkException) t;
        return new LonglinkException(String.valueOf(t.getMessage()), t);
    }

    // --- helpers ---

    // later runs r on the timer after ms; null once the client has stopped.
    private ScheduledFuture<?> later(Runnable r, long ms) {
        try {
            return timer.schedule(r, ms, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException stopped) {
            return null;
        }
    }

    // every runs r on the timer every ms; null once the client has stopped.
    private ScheduledFuture<?> every(Runnable r, long ms) {
        try {
            return timer.scheduleAtFixedRate(r, ms, ms, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException stopped) {
            return null;
        }
    }

    private static java.util.concurrent.ThreadFactory daemon(String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }

    // readAll reads in to its end (InputStream.readAllBytes is Java 9, but
    // Android has it only from API level 33).
    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        for (int n; (n = in.read(buf)) > 0;) b.write(buf, 0, n);
        return b.toByteArray();
    }

    private static void closeQuietly(Socket s) {
        if (s == null) return;
        try {
            s.close();
        } catch (IOException e) {
            // closing anyway
        }
    }

    /** One app's login: its token, and what the client reads from it (unverified: the server verifies). */
    static final class Login {
        final String app, device, token;
        final long got, exp; // ms

        private Login(String app, String device, String token, long got, long exp) {
            this.app = app;
            this.device = device;
            this.token = token;
            this.got = got;
            this.exp = exp;
        }

        static Login parse(String token) {
            String[] parts = token == null ? new String[0] : token.split("\\.");
            if (parts.length != 3) throw new IllegalArgumentException("longlink: token is not a JWT");
            Map<String, Object> claims;
            try {
                claims = Json.object(new String(Base64.getUrlDecoder().decode(parts[1]), StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("longlink: token payload is not JSON", e);
            }
            long now = System.currentTimeMillis();
            Object exp = claims.get("exp");
            return new Login(String.valueOf(claims.get("app")), String.valueOf(claims.get("sub")), token, now,
                    exp instanceof Double ? (long) (((Double) exp) * 1000) : now + 3_600_000);
        }

        long refreshAt() {
            return got + (exp - got) * 4 / 5;
        }
    }

    /** A live connection: its socket, its writer and its timers. */
    private final class Conn {
        final Socket socket;
        final InputStream in;
        final OutputStream out;
        final Welcome welcome;
        final BlockingQueue<byte[]> queue = new ArrayBlockingQueue<>(o.queueFrames);
        private final Thread writer = new Thread(this::write, "longlink-writer");
        final List<ScheduledFuture<?>> timers = new ArrayList<>(); // guarded by this
        volatile long lastHeard = System.currentTimeMillis();
        volatile long writeStarted; // when the write under way began, 0 if none
        volatile boolean closed;
        private LonglinkException why; // guarded by this: the first reason it ends

        Conn(Socket socket, InputStream in, OutputStream out, Welcome welcome) {
            this.socket = socket;
            this.in = in;
            this.out = new BufferedOutputStream(out, 8192);
            this.welcome = welcome;
        }

        void startWriter() {
            writer.setDaemon(true);
            writer.start();
        }

        private void write() {
            try {
                for (;;) {
                    byte[] b = queue.take();
                    if (b == STOP_WRITER) {
                        out.flush();
                        return;
                    }
                    writeStarted = System.currentTimeMillis();
                    out.write(b);
                    if (queue.isEmpty()) out.flush();
                    writeStarted = 0;
                }
            } catch (IOException e) {
                fail(new LonglinkException(0, "write failed: " + e.getMessage(), ""));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        synchronized void schedule(ScheduledFuture<?> f) {
            if (f == null) return;
            if (closed) f.cancel(false);
            else timers.add(f);
        }

        // why records the first reason the connection ends, and returns it.
        synchronized LonglinkException why(LonglinkException e) {
            if (why == null) why = e;
            return why;
        }

        // fail ends the connection for e: the reader then returns it.
        void fail(LonglinkException e) {
            why(e);
            closeQuietly(socket);
        }

        // close ends the connection; with drain, once the frames queued (the
        // last acks) are written, for at most the write timeout.
        void close(boolean drain) {
            synchronized (this) {
                if (closed) return;
                closed = true;
                for (ScheduledFuture<?> f : timers) f.cancel(false);
                timers.clear();
            }
            if (!drain || !queue.offer(STOP_WRITER)) {
                queue.clear();
                queue.offer(STOP_WRITER);
            } else if (writer.isAlive() && Thread.currentThread() != writer) {
                try {
                    writer.join(o.writeTimeoutMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            closeQuietly(socket);
        }
    }
}
