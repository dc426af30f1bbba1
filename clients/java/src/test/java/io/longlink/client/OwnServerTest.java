package io.longlink.client;

import static io.longlink.client.Harness.eventually;
import static io.longlink.client.Harness.push;
import static io.longlink.client.Harness.token;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tests that need a server of their own: a stored broadcast reaches every
 * device of the app that logs in, and a stopped server stops every client.
 */
class OwnServerTest {
    static Harness.Server server;

    @BeforeAll
    static void startServer() throws Exception {
        server = Harness.start("", "\"gateway\":{\"heartbeat_min\":\"1s\"}");
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) server.close();
    }

    @Test
    void storedBroadcastsComeByBseqKeptInTheSeqStore(@TempDir Path dir) throws Exception {
        String device = Harness.deviceId();
        Path file = dir.resolve("seqs.properties");
        ClientTest.Recorder r1 = new ClientTest.Recorder();
        long b1;
        try (Client c = new Client(new Options().address(server.gateway).token(token(device)).listener(r1)
                .seqStore(new FileSeqStore(file)).ackDelayMs(10))) {
            c.connect();
            Map<String, Object> b = push(server, "\"broadcast\":true,\"data\":\"to all\",\"ttl\":600");
            eventually("the broadcast", () -> r1.pushes.size() == 1);
            b1 = r1.pushes.get(0).bseq();
            assertTrue(b1 > 0);
            assertEquals(0, r1.pushes.get(0).seq());
            assertEquals(b.get("id"), r1.pushes.get(0).id());
            eventually("the bseq kept in the file", () -> new FileSeqStore(file).getBSeq("demo") == b1);
        }

        // A new process with the same store logs in after b1: only what is new comes.
        ClientTest.Recorder r2 = new ClientTest.Recorder();
        try (Client c = new Client(new Options().address(server.gateway).token(token(device)).listener(r2)
                .seqStore(new FileSeqStore(file)))) {
            c.connect();
            push(server, "\"broadcast\":true,\"data\":\"again\",\"ttl\":600");
            eventually("the second broadcast", () -> r2.pushes.size() == 1);
            assertEquals(List.of("again"), r2.texts());
            assertEquals(b1 + 1, r2.pushes.get(0).bseq());
        }
    }

    @Test
    void aSilentServerIsLeftAfterThreeHeartbeats() throws Exception {
        ClientTest.Recorder r = new ClientTest.Recorder();
        try (Client c = new Client(new Options().address(server.gateway).token(token(Harness.deviceId())).listener(r)
                .heartbeatSeconds(1).backoffMs(50, 200))) {
            assertEquals(1, c.connect().heartbeatSeconds());
            long pid = server.proc.pid();
            signal("-STOP", pid); // the server neither reads nor answers: its socket stays open
            try {
                eventually("the read deadline", () -> !r.disconnects.isEmpty());
            } finally {
                signal("-CONT", pid);
            }
            assertEquals(Code.HEARTBEAT_TIMEOUT, r.disconnects.get(0).code());
            eventually("the reconnect", () -> r.connects.get() == 2);
        }
    }

    @Test
    void aStuckWriteEndsTheConnectionAndAFullQueueRefusesAtOnce() throws Exception {
        ClientTest.Recorder r = new ClientTest.Recorder();
        try (Client c = new Client(new Options().address(server.gateway).token(token(Harness.deviceId())).listener(r)
                .heartbeatSeconds(3).writeTimeoutMs(1000).queueFrames(8).backoffMs(50, 200))) {
            c.connect();
            long pid = server.proc.pid();
            signal("-STOP", pid); // the server reads nothing: the socket's buffers fill, then a write blocks
            List<CompletableFuture<UpReply>> ups = new ArrayList<>();
            try {
                byte[] big = new byte[60_000];
                for (int i = 0; i < 400; i++) ups.add(c.up("chat", big));
                assertTrue(ups.stream().anyMatch(f -> f.isCompletedExceptionally()), "no up refused at once");
                eventually("the stuck write's end", () -> !r.disconnects.isEmpty());
            } finally {
                signal("-CONT", pid);
            }
            assertEquals("write timed out", r.disconnects.get(0).reason());
            eventually("the reconnect", () -> r.connects.get() == 2);
        }
    }

    private static void signal(String sig, long pid) throws Exception {
        assertEquals(0, new ProcessBuilder("kill", sig, Long.toString(pid)).start().waitFor());
    }
}
