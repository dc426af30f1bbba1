package io.longlink.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The binary frame codec: docs/protocol.md's example, round trips, and hostile input. */
class FrameTest {
    private static byte[] bytes(int... b) {
        byte[] out = new byte[b.length];
        for (int i = 0; i < b.length; i++) out[i] = (byte) b[i];
        return out;
    }

    // docs/protocol.md, "Example, byte by byte".
    private static final byte[] EXAMPLE = bytes(0, 0, 0, 0x11, 0x03, 0x11, 4, 'd', 'e', 'm', 'o', 0x13, 2, 'm', '1', 0x14, 7,
            0x17, 2, 'h', 'i');

    @Test
    void theDocumentsExample() throws IOException {
        Frame f = Frame.read(new ByteArrayInputStream(EXAMPLE), Frame.MAX_FRAME);
        assertEquals(Frame.PUSH, f.op);
        assertEquals("demo", f.app);
        assertEquals("m1", f.id);
        assertEquals(7, f.seq);
        assertEquals("hi", new String(f.data, StandardCharsets.UTF_8));
        assertArrayEquals(EXAMPLE, f.encode());
        assertArrayEquals(bytes(0, 0, 0, 1, 5), new Frame(Frame.PING).encode());
    }

    @Test
    void aLoginRoundTrips() throws IOException {
        Frame login = new Frame(Frame.LOGIN);
        login.tokens.addAll(List.of("t1", "t2"));
        login.lastSeqs.addAll(List.of(12L, 0L)); // zeros of repeated fields are kept: one per token
        login.lastBseqs.addAll(List.of(0L, 1L << 62));
        login.heartbeat = 30;
        login.ref = "r1";
        byte[] b = login.encode();
        Frame back = Frame.decode(Arrays.copyOfRange(b, 4, b.length));
        assertEquals(login.tokens, back.tokens);
        assertEquals(login.lastSeqs, back.lastSeqs);
        assertEquals(login.lastBseqs, back.lastBseqs);
        assertEquals(30, back.heartbeat);
        assertEquals("r1", back.ref);
    }

    @Test
    void unknownFieldsAreSkipped() throws IOException {
        // field 99 as a varint and as bytes, then app.
        byte[] body = bytes(0x03, 0xc6, 0x01, 0x05, 0xc7, 0x01, 0x02, 'x', 'y', 0x11, 1, 'a');
        assertEquals("a", Frame.decode(body).app);
    }

    /** Random and truncated input: the decoder throws an IOException or returns a frame, nothing else. */
    @Test
    void hostileInputOnlyFailsCleanly() {
        Random rnd = new Random(1);
        for (int i = 0; i < 100_000; i++) {
            byte[] b = new byte[rnd.nextInt(64)];
            rnd.nextBytes(b);
            if (b.length >= 4 && rnd.nextBoolean()) { // a plausible length, so the body is read
                b[0] = 0;
                b[1] = 0;
                b[2] = 0;
                b[3] = (byte) rnd.nextInt(b.length);
            }
            decodes(b);
        }
        for (int n = 0; n < EXAMPLE.length; n++) decodes(Arrays.copyOf(EXAMPLE, n)); // every truncation
        decodes(bytes(0x7f, 0xff, 0xff, 0xff)); // a length past the protocol's limit: nothing allocated
        decodes(bytes(0, 0, 0, 11, 3, 0x14, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)); // a varint past 64 bits
    }

    private static void decodes(byte[] b) {
        try {
            Frame.read(new ByteArrayInputStream(b), 1 << 16);
        } catch (IOException expected) {
            // a clean failure
        } catch (RuntimeException e) {
            fail("input " + Arrays.toString(b) + " threw " + e);
        }
    }
}
