package io.longlink.client;

import static io.longlink.client.Harness.api;
import static io.longlink.client.Harness.deviceId;
import static io.longlink.client.Harness.eventually;
import static io.longlink.client.Harness.num;
import static io.longlink.client.Harness.push;
import static io.longlink.client.Harness.token;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The SDK against real longlink servers (Harness). */
class ClientTest {
    static Harness.Server server;
    static HttpServer backend; // the app's backend: answers upstream calls

    @BeforeAll
    static void startServer() throws Exception {
        backend = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        backend.createContext("/up", ex -> {
            byte[] body = ex.getRequestBody().readAllBytes();
            String data = String.valueOf(Json.object(new String(body, StandardCharsets.UTF_8)).get("data"));
            byte[] answer = ("echo:" + data).getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(200, answer.length);
            ex.getResponseBody().write(answer);
            ex.close();
        });
        backend.start();
        server = Harness.start("\"webhooks\":{\"upstream\":{\"chat\":\"http://127.0.0.1:" + backend.getAddress().getPort() + "/up\"}}", "");
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) server.close();
        if (backend != null) backend.stop(0);
    }

    /** What a client's listener saw. */
    static final class Recorder implements Listener {
        final List<Push> pushes = new CopyOnWriteArrayList<>();
        final List<LonglinkException> disconnects = new CopyOnWriteArrayList<>(), errors = new CopyOnWriteArrayList<>();
        final List<String> appsEnded = new CopyOnWriteArrayList<>(), recalls = new CopyOnWriteArrayList<>();
        final AtomicInteger connects = new AtomicInteger();
        final AtomicReference<LonglinkException> closed = new AtomicReference<>();
        final List<String> threads = new CopyOnWriteArrayList<>();
        volatile Runnable afterDisconnect = () -> {};

        @Override
        public void onConnected(Welcome w) {
            connects.incrementAndGet();
        }

        @Override
        public void onDisconnected(LonglinkException why) {
            disconnects.add(why);
            afterDisconnect.run();
        }

        @Override
        public void onPush(Push p) {
            threads.add(Thread.currentThread().getName());
            pushes.add(p);
        }

        @Override
        public void onRecall(String app, String id) {
            recalls.add(app + "/" + id);
        }

        @Override
        public void onAppEnded(String app, LonglinkException why) {
            appsEnded.add(app + " " + why.code());
        }

        @Override
        public void onError(LonglinkException e) {
            errors.add(e);
        }

        @Override
        public void onClosed(LonglinkException why) {
            closed.set(why);
        }

        List<String> texts() {
            return pushes.stream().map(Push::text).collect(Collectors.toList());
        }
    }

    static Options options(String device, Recorder r) {
        return new Options().address(server.gateway).token(token(device)).listener(r).backoffMs(50, 200);
    }

    static boolean online(String device) throws Exception {
        Map<String, Object> p = api(server, "GET", "/v1/presence?app=demo&device=" + device, null, Harness.API_KEY);
        return Boolean.TRUE.equals(((Map<?, ?>) ((Map<?, ?>) p.get("devices")).get(device)).get("online"));
    }

    static long waiting(String device) throws Exception {
        return num(api(server, "GET", "/v1/admin/devices/demo/" + device, null, Harness.OPS_TOKEN), "stored_waiting");
    }

    @Test
    void onlineAndBinaryPushesThroughDispatchPastADeadURL() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        String dead = "http://127.0.0.1:" + Harness.freePort();
        try (Client c = new Client(new Options().dispatch(dead, server.api).token(token(device)).listener(r))) {
            Welcome w = c.connect();
            assertEquals(device, w.device());
            assertEquals(List.of("demo"), w.apps());
            Map<String, Object> sent = push(server, "\"devices\":[\"" + device + "\"],\"data\":\"hello\"");
            assertEquals(1, num(sent, "online"));
            push(server, "\"devices\":[\"" + device + "\"],\"data_base64\":\"/wAB\"");
            eventually("both pushes", () -> r.pushes.size() == 2);
            assertEquals("hello", r.pushes.get(0).text());
            assertEquals(sent.get("id"), r.pushes.get(0).id());
            assertEquals(0, r.pushes.get(0).seq());
            assertArrayEquals(new byte[] {(byte) 0xff, 0, 1}, r.pushes.get(1).data());
            assertTrue(r.threads.stream().allMatch(t -> t.equals("longlink-events")), "the listener runs on the executor: " + r.threads);
        }
    }

    @Test
    void storedMessagesAckedKeptInTheFileStoreReplayedAfterARestart(@TempDir Path dir) throws Exception {
        String device = deviceId();
        Path file = dir.resolve("seqs.properties");
        Recorder r1 = new Recorder();
        try (Client first = new Client(options(device, r1).seqStore(new FileSeqStore(file)).ackDelayMs(20))) {
            first.connect();
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"m1\",\"ttl\":600");
            eventually("m1", () -> r1.pushes.size() == 1);
            assertEquals(1, r1.pushes.get(0).seq());
            eventually("the ack kept in the file", () -> new FileSeqStore(file).get("demo") == 1);
            eventually("the ack on the server", () -> waiting(device) == 0);
        }
        eventually("the closed client offline", () -> !online(device));

        // Offline: two stored messages wait; the server restarts.
        Map<String, Object> m2 = push(server, "\"devices\":[\"" + device + "\"],\"data\":\"m2\",\"ttl\":600");
        push(server, "\"devices\":[\"" + device + "\"],\"data\":\"m3\",\"ttl\":600");
        assertEquals(1, num(m2, "offline"));
        server = server.restart();

        // A new process (a new client, the same file) resumes after m1.
        Recorder r2 = new Recorder();
        try (Client second = new Client(options(device, r2).address(server.gateway).seqStore(new FileSeqStore(file)))) {
            second.connect();
            eventually("m2 and m3 replayed", () -> r2.pushes.size() == 2);
            assertEquals(List.of("m2", "m3"), r2.texts());
            assertEquals(m2.get("id"), r2.pushes.get(0).id());
            assertEquals(2, r2.pushes.get(0).seq());
            eventually("acked up to 3", () -> second.lastSeq("demo") == 3);

            // The server restarts under the live client: it reconnects by
            // itself, and nothing acked comes again. (The device's seqs go
            // on after those the store reserved: protocol.md.)
            server = server.restart();
            eventually("the reconnect", () -> r2.connects.get() == 2);
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"m4\",\"ttl\":600");
            eventually("m4", () -> r2.pushes.size() == 3);
            assertEquals("m4", r2.texts().get(2));
            assertTrue(r2.pushes.get(2).seq() > 3, "m4's seq after m3's: " + r2.pushes.get(2).seq());
            eventually("everything acked", () -> waiting(device) == 0);
        }
    }

    @Test
    void aStoredMessageReplayedAfterALostAckIsHandedOverOnce() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        // Acks wait long: the connection is lost before this one is sent.
        Client c = new Client(options(device, r).ackDelayMs(60_000));
        c.connect();
        Map<String, Object> m1 = push(server, "\"devices\":[\"" + device + "\"],\"data\":\"once\",\"ttl\":600");
        eventually("m1", () -> r.pushes.size() == 1);
        server = server.restart();
        eventually("the reconnect", () -> r.connects.get() == 2);
        Map<String, Object> m2 = push(server, "\"devices\":[\"" + device + "\"],\"data\":\"next\",\"ttl\":600");
        eventually("m2", () -> r.pushes.size() == 2);
        assertEquals(List.of(m1.get("id"), m2.get("id")), r.pushes.stream().map(Push::id).collect(Collectors.toList()));
        c.close(); // sends the batched ack
        eventually("acked at close", () -> waiting(device) == 0);
        long next = r.pushes.get(1).seq(); // after those the store reserved before the restart
        assertTrue(next > 1, "m2's seq after m1's: " + next);
        assertEquals(next, c.lastSeq(null));
    }

    @Test
    void upReturnsTheBackendsAnswer() throws Exception {
        String device = deviceId();
        try (Client c = new Client(options(device, new Recorder()))) {
            c.connect();
            UpReply reply = c.up("chat", "hi".getBytes(StandardCharsets.UTF_8)).get(10, TimeUnit.SECONDS);
            assertEquals(200, reply.status());
            assertEquals("echo:hi", reply.text());
            ExecutionException e = assertThrows(ExecutionException.class, () -> c.up("nope", new byte[0]).get(10, TimeUnit.SECONDS));
            assertEquals(Code.BAD_FRAME, ((LonglinkException) e.getCause()).code());
        }
    }

    @Test
    void vendorTokensKeptAndABadVendorRefusedWithTheConnectionKept() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        try (Client c = new Client(options(device, r))) {
            c.connect();
            c.setVendorToken("fcm", "fcm:token-1").get(10, TimeUnit.SECONDS);
            c.setVendorToken("demo", "hms", "hms-token").get(10, TimeUnit.SECONDS);
            ExecutionException e = assertThrows(ExecutionException.class, () -> c.setVendorToken("gcm", "t").get(10, TimeUnit.SECONDS));
            assertEquals(Code.BAD_FRAME, ((LonglinkException) e.getCause()).code());
            Map<String, Object> got = api(server, "GET", "/v1/devices/vendor?app=demo&device=" + device, null, Harness.API_KEY);
            assertEquals(Map.of("fcm", "fcm:token-1", "hms", "hms-token"), got.get("tokens"));
            c.up("chat", "still here".getBytes(StandardCharsets.UTF_8)).get(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void aMessageShownFromAnOSNotificationIsAckedNotHandedOver() throws Exception {
        String device = deviceId();
        String shown = (String) push(server, "\"devices\":[\"" + device + "\"],\"data\":\"shown by the OS\",\"ttl\":600").get("id");
        String fresh = (String) push(server, "\"devices\":[\"" + device + "\"],\"data\":\"not shown yet\",\"ttl\":600").get("id");
        Recorder r = new Recorder();
        try (Client c = new Client(options(device, r))) {
            c.markShown(shown); // the app woke from the notification carrying longlink_id
            c.connect();
            eventually("the message not shown", () -> r.pushes.size() == 1);
            assertEquals(fresh, r.pushes.get(0).id());
            eventually("both acked", () -> waiting(device) == 0);
        }
    }

    @Test
    void groupsAllowedRefusedAndJoinedAgainAfterAReconnect() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        Options o = options(device, r).token(Harness.token(Harness.SECRET, "demo", device, 3600, "[\"room-*\"]"));
        try (Client c = new Client(o)) {
            c.connect();
            c.join("room-1").get(10, TimeUnit.SECONDS);
            assertEquals(1, num(push(server, "\"group\":\"room-1\",\"data\":\"g\""), "online"));
            eventually("the group push", () -> r.pushes.size() == 1);
            ExecutionException e = assertThrows(ExecutionException.class, () -> c.join("secret").get(10, TimeUnit.SECONDS));
            assertEquals(Code.NOT_ALLOWED, ((LonglinkException) e.getCause()).code());

            server = server.restart();
            eventually("the group joined again", () -> num(push(server, "\"group\":\"room-1\",\"data\":\"x\""), "online") == 1);
            c.leave("room-1").get(10, TimeUnit.SECONDS);
            assertEquals(0, num(push(server, "\"group\":\"room-1\",\"data\":\"y\""), "online"));
        }
    }

    @Test
    void tokensAreRefreshedBeforeTheyExpire() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        AtomicInteger asked = new AtomicInteger();
        Options o = options(device, r).token(Harness.token(Harness.SECRET, "demo", device, 3, null))
                .tokenSource(app -> {
                    asked.incrementAndGet();
                    return Harness.token(Harness.SECRET, app, device, 3, null);
                });
        try (Client c = new Client(o)) {
            c.connect();
            eventually("a third token (the connection outlived two)", () -> asked.get() >= 3);
            assertEquals(1, r.connects.get(), "reconnected: " + r.disconnects);
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"still here\"");
            eventually("the push", () -> r.pushes.size() == 1);
        }
    }

    @Test
    void anExpiredTokenReconnectsWithOneFromTheTokenSource() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        AtomicBoolean fresh = new AtomicBoolean();
        // It fails while the first token is young (no refresh happens), then gives a good one. The
        // first lives 3 s: the connect must be done before it expires, on a loaded box too.
        Options o = options(device, r).token(Harness.token(Harness.SECRET, "demo", device, 3, null)).tokenSource(app -> {
            if (!fresh.get()) throw new IllegalStateException("not yet");
            return token(device);
        });
        r.afterDisconnect = () -> fresh.set(true);
        try (Client c = new Client(o)) {
            c.connect();
            eventually("the reconnect with a fresh token", () -> r.connects.get() == 2);
            assertEquals(Code.TOKEN_EXPIRED, r.disconnects.get(0).code());
        }
    }

    @Test
    void twoAppsOnOneConnectionOneKicked() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        Options o = options(device, r).tokens(token(device), Harness.token(Harness.OTHER_SECRET, "other", device, 3600, null));
        try (Client c = new Client(o)) {
            assertEquals(List.of("demo", "other"), c.connect().apps());
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"to demo\",\"ttl\":600");
            api(server, "POST", "/v1/push", "{\"app\":\"other\",\"devices\":[\"" + device + "\"],\"data\":\"to other\",\"ttl\":600}", Harness.OTHER_KEY);
            eventually("both apps' pushes", () -> r.pushes.size() == 2);
            assertEquals(List.of("demo", "other"), r.pushes.stream().map(Push::app).sorted().collect(Collectors.toList()));
            eventually("each app's seq", () -> c.lastSeq("demo") == 1 && c.lastSeq("other") == 1);

            api(server, "POST", "/v1/kick", "{\"app\":\"other\",\"devices\":[\"" + device + "\"]}", Harness.OTHER_KEY);
            eventually("other ended", () -> r.appsEnded.equals(List.of("other " + Code.KICKED)));
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"demo goes on\"");
            eventually("demo's push", () -> r.pushes.size() == 3);
            assertEquals(Client.State.CONNECTED, c.state());
        }
    }

    @Test
    void finalCodesStopTheClient() throws Exception {
        // A bad token fails the first connect with 4001.
        Client bad = new Client(options(deviceId(), new Recorder()).token(Harness.token("wrong-secret-0123456789", "demo", "d", 60, null)));
        LonglinkException e = assertThrows(LonglinkException.class, bad::connect);
        assertEquals(Code.AUTH_FAILED, e.code());
        assertEquals(Client.State.CLOSED, bad.state());

        // Replaced by a newer login: 4003 is final for the older client.
        String device = deviceId();
        Recorder older = new Recorder();
        Client c = new Client(options(device, older));
        c.connect();
        try (Client newer = new Client(options(device, new Recorder()))) {
            newer.connect();
            eventually("the older client closed", () -> older.closed.get() != null);
            assertEquals(Code.REPLACED, older.closed.get().code());
            assertEquals(Client.State.CLOSED, c.state());
        }

        // Kicked: 4008 is final.
        String kicked = deviceId();
        Recorder r = new Recorder();
        Client k = new Client(options(kicked, r));
        k.connect();
        api(server, "POST", "/v1/kick", "{\"app\":\"demo\",\"devices\":[\"" + kicked + "\"]}", Harness.API_KEY);
        eventually("the kicked client closed", () -> r.closed.get() != null);
        assertEquals(Code.KICKED, r.closed.get().code());
        assertEquals(1, r.connects.get());
    }

    @Test
    void reconnectNowSkipsTheBackoff() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        // A backoff of a minute: only reconnectNow() brings it back within the test.
        try (Client c = new Client(options(device, r).backoffMs(60_000, 60_000))) {
            c.connect();
            server.stop();
            eventually("the disconnect", () -> c.state() == Client.State.DISCONNECTED);
            server = server.restart();
            c.reconnectNow();
            eventually("the reconnect", () -> r.connects.get() == 2);
        }
    }

    @Test
    void recallsComeAsEvents() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        try (Client c = new Client(options(device, r))) {
            c.connect();
            Map<String, Object> m = push(server, "\"devices\":[\"" + device + "\"],\"data\":\"oops\",\"ttl\":600");
            eventually("the push", () -> r.pushes.size() == 1);
            api(server, "DELETE", "/v1/messages/" + m.get("id") + "?app=demo", null, Harness.API_KEY);
            eventually("the recall", () -> r.recalls.equals(List.of("demo/" + m.get("id"))));
        }
    }

    @Test
    void statsReachMetrics() throws Exception {
        String device = deviceId();
        try (Client c = new Client(options(device, new Recorder()).heartbeatSeconds(5).statsIntervalMs(300).network(() -> "wifi"))) {
            c.connect();
            String metric = "longlink_client_connect_seconds_count{app=\"demo\",network=\"wifi\",transport=\"tcp\"}";
            eventually("the stats in /metrics", () -> {
                var resp = server.http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(server.api + "/metrics")).build(),
                        java.net.http.HttpResponse.BodyHandlers.ofString());
                return resp.body().contains(metric);
            });
        }
    }

    @Test
    void tlsWithASelfSignedCA(@TempDir Path dir) throws Exception {
        Process cert = new ProcessBuilder(System.getenv("LONGLINK_BIN"), "cert", "--dir", dir.toString(), "--host", "127.0.0.1")
                .redirectErrorStream(true).start();
        assertEquals(0, cert.waitFor(), new String(cert.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
        Path pem = dir.resolve("cert.pem");
        try (Harness.Server tls = Harness.start("", "\"tls\":{\"cert_file\":" + Harness.quote(pem.toString())
                + ",\"key_file\":" + Harness.quote(dir.resolve("key.pem").toString()) + "}")) {
            try (InputStream in = Files.newInputStream(pem)) {
                tls.http = HttpClient.newBuilder().sslContext(Options.context(in)).build();
            }
            assertTrue(tls.api.startsWith("https://"), tls.api);
            String device = deviceId();
            Recorder r = new Recorder();
            Options o;
            try (InputStream in = Files.newInputStream(pem)) {
                o = new Options().dispatch(tls.api).tls(Options.trusting(in)).token(token(device)).listener(r);
            }
            try (Client c = new Client(o)) {
                c.connect();
                push(tls, "\"devices\":[\"" + device + "\"],\"data\":\"sealed\"");
                eventually("the push over TLS", () -> r.pushes.size() == 1);
                assertEquals("sealed", r.pushes.get(0).text());
            }
            // The system's CAs do not trust a self-signed certificate.
            Client untrusting = new Client(new Options().address(tls.gateway).tls().token(token(device)));
            LonglinkException e = assertThrows(LonglinkException.class, untrusting::connect);
            assertNotEquals(0, e.getMessage().length());
        }
    }

    @Test
    void aListenerThatThrowsIsReportedAndTheClientGoesOn() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        Listener l = new Listener() {
            @Override
            public void onPush(Push p) {
                r.onPush(p);
                if (p.text().equals("bad")) throw new IllegalStateException("cannot show it");
            }

            @Override
            public void onError(LonglinkException e) {
                r.onError(e);
            }
        };
        try (Client c = new Client(options(device, r).listener(l))) {
            c.connect();
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"bad\",\"ttl\":600");
            eventually("the error", () -> r.errors.size() == 1);
            assertTrue(r.errors.get(0).getMessage().contains("cannot show it"), r.errors.get(0).getMessage());
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"good\",\"ttl\":600");
            eventually("the next push", () -> r.pushes.size() == 2);
            eventually("both acked by the next one's ack", () -> waiting(device) == 0 && c.lastSeq("demo") == 2);
        }
    }

    @Test
    void theListenerRunsOnTheAppsExecutor() throws Exception {
        String device = deviceId();
        Recorder r = new Recorder();
        var exec = java.util.concurrent.Executors.newSingleThreadExecutor(run -> new Thread(run, "app-main"));
        try (Client c = new Client(options(device, r).executor(exec))) {
            c.connect();
            push(server, "\"devices\":[\"" + device + "\"],\"data\":\"x\"");
            eventually("the push", () -> r.pushes.size() == 1);
            assertEquals(new ArrayList<>(List.of("app-main")), new ArrayList<>(r.threads));
        } finally {
            exec.shutdown();
        }
    }
}
