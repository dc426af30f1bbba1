package io.longlink.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What the SDK costs a device (docs/benchmarks.md, "The Java SDK"), against
 * a server started from LONGLINK_BIN:
 *
 * <pre>
 * java -cp CLASSES:TESTS io.longlink.client.Bench idle SECONDS   # bytes and writes of an idle client, per heartbeat
 * java -cp CLASSES:TESTS io.longlink.client.Bench heap N         # heap per idle client, N clients in this JVM
 * java -cp CLASSES:TESTS io.longlink.client.Bench latency N      # push API call to onPush, N pushes one at a time
 * </pre>
 */
public final class Bench {
    private Bench() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) throw new IllegalArgumentException("usage: Bench idle SECONDS | heap N | latency N");
        int n = Integer.parseInt(args[1]);
        try (Harness.Server server = Harness.start("", "\"gateway\":{\"heartbeat_min\":\"1s\"}")) {
            switch (args[0]) {
                case "idle": idle(server, n); break;
                case "heap": heap(server, n); break;
                case "latency": latency(server, n); break;
                default: throw new IllegalArgumentException("no scenario " + args[0]);
            }
        }
    }

    /** An idle client through a proxy that counts the bytes and the writes each way, at a heartbeat of 1 s. */
    private static void idle(Harness.Server server, int seconds) throws Exception {
        Proxy proxy = new Proxy(server.gateway);
        try (Client c = new Client(new Options().address(proxy.address()).token(Harness.token(Harness.deviceId()))
                .heartbeatSeconds(1).statsIntervalMs(0))) {
            Welcome w = c.connect();
            Thread.sleep(500);
            long up0 = proxy.up.bytes.get(), upWrites0 = proxy.up.writes.get(), down0 = proxy.down.bytes.get();
            Thread.sleep(seconds * 1000L);
            long beats = seconds / w.heartbeatSeconds();
            System.out.printf("heartbeat %d s, %d heartbeats: up %d bytes in %d writes, down %d bytes: %.1f bytes and %.2f writes up, %.1f bytes down per heartbeat%n",
                    w.heartbeatSeconds(), beats, proxy.up.bytes.get() - up0, proxy.up.writes.get() - upWrites0, proxy.down.bytes.get() - down0,
                    (proxy.up.bytes.get() - up0) / (double) beats, (proxy.up.writes.get() - upWrites0) / (double) beats,
                    (proxy.down.bytes.get() - down0) / (double) beats);
        }
    }

    /** The heap N idle clients hold, after a full GC, and the threads they run. */
    private static void heap(Harness.Server server, int n) throws Exception {
        long before = used();
        int threads = Thread.activeCount();
        List<Client> clients = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Client c = new Client(new Options().address(server.gateway).token(Harness.token(Harness.deviceId())));
            c.connect();
            clients.add(c);
        }
        long after = used();
        System.out.printf("%d idle clients: %d bytes of heap each, %.1f threads each%n", n, (after - before) / n,
                (Thread.activeCount() - threads) / (double) n);
        for (Client c : clients) c.close();
    }

    private static long used() throws InterruptedException {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(200);
        }
        return rt.totalMemory() - rt.freeMemory();
    }

    /**
     * The time from the push API call to onPush, one push at a time. The
     * call is written on a kept-alive socket by hand: java.net.http's own
     * overhead (about half a millisecond a call here) is not the SDK's.
     */
    private static void latency(Harness.Server server, int n) throws Exception {
        String device = Harness.deviceId();
        BlockingQueue<Long> got = new ArrayBlockingQueue<>(1);
        Listener l = new Listener() {
            @Override
            public void onPush(Push p) {
                got.add(System.nanoTime());
            }
        };
        try (Client c = new Client(new Options().address(server.gateway).token(Harness.token(device)).listener(l));
                RawPusher pusher = new RawPusher(server.api)) {
            c.connect();
            long[] us = new long[n], api = new long[n];
            for (int i = -1000; i < n; i++) { // 1,000 to warm up (the JIT)
                long start = System.nanoTime();
                pusher.push("{\"app\":\"demo\",\"devices\":[\"" + device + "\"],\"data\":\"m" + i + "\"}");
                if (i >= 0) api[i] = (System.nanoTime() - start) / 1000;
                Long at = got.poll(10, TimeUnit.SECONDS);
                if (at == null) throw new IllegalStateException("push " + i + " never came");
                if (i >= 0) us[i] = (at - start) / 1000;
            }
            Arrays.sort(us);
            Arrays.sort(api);
            System.out.printf("%d pushes, API call to onPush: p50 %d µs, p99 %d µs (the API call alone, to its answer: p50 %d µs, p99 %d µs)%n",
                    n, us[n / 2], us[n * 99 / 100], api[n / 2], api[n * 99 / 100]);
        }
    }

    /** HTTP/1.1 push calls on one kept-alive connection. */
    private static final class RawPusher implements AutoCloseable {
        final Socket socket;
        final InputStream in;
        final String host;

        RawPusher(String api) throws IOException {
            host = api.replaceFirst("^http://", "");
            int colon = host.lastIndexOf(':');
            socket = new Socket(host.substring(0, colon), Integer.parseInt(host.substring(colon + 1)));
            socket.setTcpNoDelay(true);
            in = new java.io.BufferedInputStream(socket.getInputStream());
        }

        void push(String body) throws IOException {
            byte[] b = body.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            String head = "POST /v1/push HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + Harness.API_KEY
                    + "\r\nContent-Type: application/json\r\nContent-Length: " + b.length + "\r\n\r\n";
            OutputStream out = socket.getOutputStream();
            out.write((head + body).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            out.flush();
            StringBuilder h = new StringBuilder();
            while (h.indexOf("\r\n\r\n") < 0) {
                int c = in.read();
                if (c < 0) throw new IOException("the API closed the connection");
                h.append((char) c);
            }
            if (!h.toString().startsWith("HTTP/1.1 200")) throw new IOException("push: " + h);
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("(?i)content-length: (\\d+)").matcher(h);
            if (!m.find()) throw new IOException("push: no length in " + h);
            in.readNBytes(Integer.parseInt(m.group(1)));
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }

    /** A TCP proxy to one address that counts what passes each way. */
    private static final class Proxy {
        final ServerSocket listener;
        final Counter up = new Counter(), down = new Counter();

        Proxy(String target) throws IOException {
            listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
            int colon = target.lastIndexOf(':');
            String host = target.substring(0, colon);
            int port = Integer.parseInt(target.substring(colon + 1));
            Thread t = new Thread(() -> {
                try {
                    for (;;) {
                        Socket in = listener.accept();
                        Socket out = new Socket(host, port);
                        pipe(in.getInputStream(), out.getOutputStream(), up);
                        pipe(out.getInputStream(), in.getOutputStream(), down);
                    }
                } catch (IOException e) {
                    // closed
                }
            });
            t.setDaemon(true);
            t.start();
        }

        String address() {
            return "127.0.0.1:" + listener.getLocalPort();
        }

        private static void pipe(InputStream in, OutputStream out, Counter c) {
            Thread t = new Thread(() -> {
                byte[] buf = new byte[65536];
                try {
                    for (int n; (n = in.read(buf)) > 0;) {
                        c.bytes.addAndGet(n);
                        c.writes.incrementAndGet();
                        out.write(buf, 0, n);
                    }
                } catch (IOException e) {
                    // closed
                }
            });
            t.setDaemon(true);
            t.start();
        }
    }

    private static final class Counter {
        final AtomicLong bytes = new AtomicLong(), writes = new AtomicLong();
    }
}
