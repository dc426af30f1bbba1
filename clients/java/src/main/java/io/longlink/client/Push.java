package io.longlink.client;

import java.nio.charset.StandardCharsets;

/** A message pushed to the device. */
public final class Push {
    private final String app, id;
    private final long seq, bseq;
    private final byte[] data;

    Push(String app, String id, long seq, long bseq, byte[] data) {
        this.app = app;
        this.id = id;
        this.seq = seq;
        this.bseq = bseq;
        this.data = data;
    }

    public String app() {
        return app;
    }

    /** The message id: the same on every delivery of one message. */
    public String id() {
        return id;
    }

    /** A stored message's place in the device's mailbox of its app; 0 otherwise. */
    public long seq() {
        return seq;
    }

    /** A stored broadcast's place in its app's broadcast log; 0 otherwise. */
    public long bseq() {
        return bseq;
    }

    /** Whether the message was stored: it is acked once the listener returns. */
    public boolean stored() {
        return seq > 0 || bseq > 0;
    }

    /** The payload, as the app's backend pushed it. */
    public byte[] data() {
        return data.clone();
    }

    /** The payload as UTF-8 text. */
    public String text() {
        return new String(data, StandardCharsets.UTF_8);
    }

    @Override
    public String toString() {
        return "Push{app=" + app + ", id=" + id + ", seq=" + seq + ", bseq=" + bseq + ", " + data.length + " bytes}";
    }
}
