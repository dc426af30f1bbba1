package io.longlink.client;

import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Real longlink servers for the tests: the binary LONGLINK_BIN (the Go test
 * that runs these builds it), started with a config in a temporary
 * directory on loopback ports, and what an app's backend does (minting
 * tokens, calling the push API).
 */
final class Harness {
    static final String SECRET = "java-test-secret-0123456789";
    static final String API_KEY = "java-test-api-key-0123456789";
    static final String OTHER_SECRET = "java-test-other-secret-0123";
    static final String OTHER_KEY = "java-test-other-key-0123456";
    static final String OPS_TOKEN = "java-test-ops-token-0123456789";

    private Harness() {}

    /** A longlink server: its process, directory and addresses. */
    static final class Server implements AutoCloseable {
        final Path dir;
        final int gatewayPort, apiPort;
        final String node, appExtra, extra;
        Process proc;
        String gateway, api;
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        final StringBuffer log = new StringBuffer();

        private Server(Path dir, int gatewayPort, int apiPort, String node, String appExtra, String extra) {
            this.dir = dir;
            this.node = node;
            this.gatewayPort = gatewayPort;
            this.apiPort = apiPort;
            this.appExtra = appExtra;
            this.extra = extra;
        }

        /** Stops the server and starts it again on the same data and ports. */
        Server restart() throws Exception {
            stop();
            Server next = start(dir, gatewayPort, apiPort, node, appExtra, extra);
            next.http = http;
            return next;
        }

        /** Stops the server with SIGINT (a fast shutdown: 4009 to every connection, no drain) and waits for it. */
        void stop() throws Exception {
            if (proc == null || !proc.isAlive()) return;
            new ProcessBuilder("kill", "-INT", Long.toString(proc.pid())).start().waitFor();
            if (!proc.waitFor(20, TimeUnit.SECONDS)) proc.destroyForcibly().waitFor();
        }

        @Override
        public void close() throws Exception {
            stop();
            removeAll(dir);
        }
    }

    static void removeAll(Path dir) throws IOException {
        try (var files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /**
     * Starts a server of the apps "demo" and "other"; appExtra (JSON
     * members, or "") goes into demo's config, extra into the top level.
     */
    static Server start(String appExtra, String extra) throws Exception {
        return startNode("n1", appExtra, extra);
    }

    /**
     * Starts a server as start does, as node node. A port found free may be
     * taken by another process before the server binds it: then it starts
     * again on other ports.
     */
    static Server startNode(String node, String appExtra, String extra) throws Exception {
        for (int attempt = 1;; attempt++) {
            Path dir = Files.createTempDirectory("longlink-java-");
            try {
                return start(dir, freePort(), freePort(), node, appExtra, extra);
            } catch (IllegalStateException e) {
                removeAll(dir);
                if (attempt == 3) throw e;
            }
        }
    }

    private static Server start(Path dir, int gatewayPort, int apiPort, String node, String appExtra, String extra) throws Exception {
        Server s = new Server(dir, gatewayPort, apiPort, node, appExtra, extra);
        String cfg = "{\"node\":" + quote(node) + ",\"data_dir\":" + quote(dir.resolve("data").toString())
                + ",\"ops\":{\"token\":\"" + OPS_TOKEN + "\"},"
                + "\"apps\":[{\"id\":\"demo\",\"secret\":\"" + SECRET + "\",\"api_key\":\"" + API_KEY + "\""
                + (appExtra.isEmpty() ? "" : "," + appExtra) + "},"
                + "{\"id\":\"other\",\"secret\":\"" + OTHER_SECRET + "\",\"api_key\":\"" + OTHER_KEY + "\"}]"
                + (extra.isEmpty() ? "" : "," + extra) + "}";
        Files.writeString(dir.resolve("longlink.yaml"), cfg); // JSON is YAML
        ProcessBuilder pb = new ProcessBuilder(System.getenv("LONGLINK_BIN"), "serve", "--config", dir.resolve("longlink.yaml").toString(),
                "--gateway-listen", "127.0.0.1:" + gatewayPort, "--api-listen", "127.0.0.1:" + apiPort);
        pb.directory(dir.toFile());
        s.proc = pb.start();
        CountDownLatch ready = new CountDownLatch(1);
        StringBuffer out = new StringBuffer();
        drain(s.proc.getInputStream(), out, ready);
        drain(s.proc.getErrorStream(), s.log, null);
        if (!ready.await(20, TimeUnit.SECONDS)) {
            s.proc.destroyForcibly();
            throw new IllegalStateException("the server did not start:\n" + out + "\n" + s.log);
        }
        Matcher g = Pattern.compile("gateway\\s+(?:tcp|tls)://(\\S+)").matcher(out);
        Matcher a = Pattern.compile("api\\s+(https?://\\S+)").matcher(out);
        if (!g.find() || !a.find()) throw new IllegalStateException("no addresses in:\n" + out);
        s.gateway = g.group(1);
        s.api = a.group(1);
        return s;
    }

    private static void drain(InputStream in, StringBuffer into, CountDownLatch ready) {
        Thread t = new Thread(() -> {
            byte[] buf = new byte[4096];
            try {
                for (int n; (n = in.read(buf)) > 0;) {
                    into.append(new String(buf, 0, n, StandardCharsets.UTF_8));
                    if (ready != null && into.indexOf("\n  data dir") >= 0) ready.countDown();
                }
            } catch (IOException e) {
                // the process ended
            }
        });
        t.setDaemon(true);
        t.start();
    }

    /** A real redis-server and nats-server on free loopback ports, for a cluster; cluster is their config block. */
    static final class Engines implements AutoCloseable {
        final Path dir;
        final List<Process> procs = new ArrayList<>();
        String cluster;

        Engines() throws Exception {
            dir = Files.createTempDirectory("longlink-engines-");
            int rp = freePort(), np = freePort();
            procs.add(new ProcessBuilder("redis-server", "--port", Integer.toString(rp), "--bind", "127.0.0.1", "--dir", dir.toString(),
                    "--save", "", "--appendonly", "yes", "--appendfsync", "always").redirectErrorStream(true)
                    .redirectOutput(dir.resolve("redis.log").toFile()).start());
            procs.add(new ProcessBuilder("nats-server", "-a", "127.0.0.1", "-p", Integer.toString(np)).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("nats.log").toFile()).start());
            for (int port : new int[] {rp, np}) {
                eventually("an engine on port " + port, () -> {
                    try (Socket c = new Socket("127.0.0.1", port)) {
                        return true;
                    } catch (IOException e) {
                        return false;
                    }
                });
            }
            cluster = "\"cluster\":{\"redis\":\"redis://127.0.0.1:" + rp + "/0\",\"nats\":\"nats://127.0.0.1:" + np + "\",\"lease\":\"2s\"}";
        }

        @Override
        public void close() throws Exception {
            for (Process p : procs) {
                p.destroy();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            removeAll(dir);
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    /** A fresh device id. */
    static String deviceId() {
        return "java-" + UUID.randomUUID().toString().substring(0, 8);
    }

    /**
     * An HS256 device token, as an app's backend mints it, valid at least ttlSeconds from now (exp is
     * in whole seconds: rounded up, not down, which would leave a 1 s token anything from 0 to 1 s).
     */
    static String token(String secret, String app, String device, long ttlSeconds, String groupsJson) {
        long nowMs = System.currentTimeMillis(), now = nowMs / 1000, exp = (nowMs + ttlSeconds * 1000 + 999) / 1000;
        String claims = "{\"app\":\"" + app + "\",\"sub\":\"" + device + "\",\"exp\":" + exp + ",\"iat\":" + now
                + (groupsJson == null ? "" : ",\"groups\":" + groupsJson) + "}";
        Base64.Encoder b64 = Base64.getUrlEncoder().withoutPadding();
        String head = b64.encodeToString("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".getBytes(StandardCharsets.UTF_8)) + "."
                + b64.encodeToString(claims.getBytes(StandardCharsets.UTF_8));
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            return head + "." + b64.encodeToString(mac.doFinal(head.getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static String token(String device) {
        return token(SECRET, "demo", device, 3600, null);
    }

    /** Calls the API with a Bearer key; returns the JSON answer (throws on non-2xx). */
    static Map<String, Object> api(Server s, String method, String path, String body, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(s.api + path)).timeout(Duration.ofSeconds(10))
                .header("Authorization", "Bearer " + key).header("Content-Type", "application/json");
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        HttpResponse<String> r = s.http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() / 100 != 2) throw new IllegalStateException(method + " " + path + ": " + r.statusCode() + " " + r.body());
        return Json.object(r.body());
    }

    /** Pushes as app demo's backend; body holds the push's members after "app". */
    static Map<String, Object> push(Server s, String members) throws Exception {
        return api(s, "POST", "/v1/push", "{\"app\":\"demo\"," + members + "}", API_KEY);
    }

    /** A number of a JSON answer. */
    static long num(Map<String, Object> m, String key) {
        Object v = m.get(key);
        return v instanceof Double ? ((Double) v).longValue() : 0;
    }

    /** A condition the test waits for. */
    interface Condition {
        boolean holds() throws Exception;
    }

    /** Waits until c holds (polling), or fails after 10 s. */
    static void eventually(String what, Condition c) throws Exception {
        long end = System.currentTimeMillis() + 10_000;
        for (;;) {
            if (c.holds()) return;
            if (System.currentTimeMillis() > end) throw new AssertionError("timed out waiting for " + what);
            Thread.sleep(20);
        }
    }
}
