package io.longlink.client;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * One frame of the native binary protocol (docs/protocol.md): a u32
 * big-endian length, an op byte, then fields, each a tag (number &lt;&lt; 1 |
 * wiretype) and a uvarint or a length-prefixed byte string. Fields left out
 * are zero or empty; unknown fields are skipped.
 */
final class Frame {
    static final int LOGIN = 1, WELCOME = 2, PUSH = 3, ACK = 4, PING = 5, PONG = 6, JOIN = 7, LEAVE = 8, OK = 9,
            UP = 10, UP_REPLY = 11, ERROR = 12, REFRESH = 13, REDIRECT = 14, STATS = 15, RECALL = 16,
            VENDOR_TOKEN = 17;

    /** The largest body the protocol allows: the first byte of a frame is always 0. */
    static final int MAX_FRAME = (1 << 24) - 1;

    private static final int REF = 1, TOKEN = 2, TOKENS = 3, LAST_SEQ = 4, HEARTBEAT = 5, DEVICE = 6, APPS = 7, APP = 8,
            ID = 9, SEQ = 10, DATA = 11, GROUP = 12, BIZ = 13, STATUS = 14, CODE = 15, REASON = 16, LAST_SEQS = 17,
            ENDPOINTS = 18, NETWORK = 19, RTT_MS = 20, CONNECT_MS = 21, CONNECT_FAILURES = 22, TRANSPORT = 23,
            BSEQ = 24, LAST_BSEQS = 25, VENDOR = 26;

    int op;
    String ref = "", token = "", device = "", app = "", id = "", group = "", biz = "", reason = "", network = "",
            transport = "", vendor = "";
    List<String> tokens = new ArrayList<>(), apps = new ArrayList<>(), endpoints = new ArrayList<>();
    List<Long> lastSeqs = new ArrayList<>(), rttMs = new ArrayList<>(), lastBseqs = new ArrayList<>();
    long lastSeq, heartbeat, seq, status, code, connectMs, connectFailures, bseq;
    byte[] data = new byte[0];

    Frame(int op) {
        this.op = op;
    }

    /** The frame, length prefix included. */
    byte[] encode() {
        Out out = new Out();
        out.write(new byte[] {0, 0, 0, 0, (byte) op}, 0, 5);
        out.string(REF, ref);
        out.string(TOKEN, token);
        for (String t : tokens) out.bytes(TOKENS, t.getBytes(StandardCharsets.UTF_8), true);
        out.varint(LAST_SEQ, lastSeq);
        for (long s : lastSeqs) out.varintAlways(LAST_SEQS, s);
        out.varint(HEARTBEAT, heartbeat);
        out.string(DEVICE, device);
        for (String a : apps) out.bytes(APPS, a.getBytes(StandardCharsets.UTF_8), true);
        out.string(APP, app);
        out.string(ID, id);
        out.varint(SEQ, seq);
        out.bytes(DATA, data, false);
        out.string(GROUP, group);
        out.string(BIZ, biz);
        out.varint(STATUS, status);
        out.varint(CODE, code);
        out.string(REASON, reason);
        for (String e : endpoints) out.bytes(ENDPOINTS, e.getBytes(StandardCharsets.UTF_8), true);
        out.string(NETWORK, network);
        for (long r : rttMs) out.varintAlways(RTT_MS, r);
        out.varint(CONNECT_MS, connectMs);
        out.varint(CONNECT_FAILURES, connectFailures);
        out.string(TRANSPORT, transport);
        out.varint(BSEQ, bseq);
        for (long s : lastBseqs) out.varintAlways(LAST_BSEQS, s);
        out.string(VENDOR, vendor);
        byte[] b = out.toByteArray();
        int n = b.length - 4;
        b[0] = (byte) (n >>> 24);
        b[1] = (byte) (n >>> 16);
        b[2] = (byte) (n >>> 8);
        b[3] = (byte) n;
        return b;
    }

    /**
     * Reads one frame from in. A malformed frame, or one whose body is
     * longer than max bytes, is a {@link ProtocolException}; a stream that
     * ends inside a frame is an {@link EOFException}.
     */
    static Frame read(InputStream in, int max) throws IOException {
        int n = 0;
        for (int i = 0; i < 4; i++) {
            int b = in.read();
            if (b < 0) throw new EOFException("the stream ended in a frame's length");
            n = n << 8 | b;
        }
        if (n <= 0 || n > Math.min(max, MAX_FRAME)) {
            throw new ProtocolException("frame length " + Integer.toUnsignedString(n) + " out of range");
        }
        byte[] body = new byte[n];
        for (int off = 0; off < n;) {
            int r = in.read(body, off, n - off);
            if (r < 0) throw new EOFException("the stream ended in a frame");
            off += r;
        }
        return decode(body);
    }

    /** Decodes a frame's body (without its length prefix). */
    static Frame decode(byte[] b) throws ProtocolException {
        if (b.length == 0) throw new ProtocolException("empty frame");
        Frame f = new Frame(b[0] & 0xff);
        In in = new In(b, 1);
        while (in.pos < b.length) {
            int tag = in.uvarintInt();
            int number = tag >>> 1;
            if ((tag & 1) == 0) {
                long v = in.uvarint();
                f.setVarint(number, v);
            } else {
                int len = in.uvarintInt();
                if (len > b.length - in.pos) throw new ProtocolException("field " + number + " runs past the frame");
                f.setBytes(number, b, in.pos, len);
                in.pos += len;
            }
        }
        return f;
    }

    private void setVarint(int number, long v) {
        switch (number) {
            case LAST_SEQ: lastSeq = v; break;
            case HEARTBEAT: heartbeat = v; break;
            case SEQ: seq = v; break;
            case STATUS: status = v; break;
            case CODE: code = v; break;
            case CONNECT_MS: connectMs = v; break;
            case CONNECT_FAILURES: connectFailures = v; break;
            case BSEQ: bseq = v; break;
            case LAST_SEQS: lastSeqs.add(v); break;
            case RTT_MS: rttMs.add(v); break;
            case LAST_BSEQS: lastBseqs.add(v); break;
            default: // unknown: skipped
        }
    }

    private void setBytes(int number, byte[] b, int off, int len) {
        if (number == DATA) {
            data = java.util.Arrays.copyOfRange(b, off, off + len);
            return;
        }
        String s = new String(b, off, len, StandardCharsets.UTF_8);
        switch (number) {
            case REF: ref = s; break;
            case TOKEN: token = s; break;
            case DEVICE: device = s; break;
            case APP: app = s; break;
            case ID: id = s; break;
            case GROUP: group = s; break;
            case BIZ: biz = s; break;
            case REASON: reason = s; break;
            case NETWORK: network = s; break;
            case TRANSPORT: transport = s; break;
            case VENDOR: vendor = s; break;
            case TOKENS: tokens.add(s); break;
            case APPS: apps.add(s); break;
            case ENDPOINTS: endpoints.add(s); break;
            default: // unknown: skipped
        }
    }

    /** A malformed frame. */
    static final class ProtocolException extends IOException {
        private static final long serialVersionUID = 1L;

        ProtocolException(String message) {
            super(message);
        }
    }

    private static final class Out extends ByteArrayOutputStream {
        Out() {
            super(64);
        }

        void uvarint(long v) {
            while ((v & ~0x7fL) != 0) {
                write((int) ((v & 0x7f) | 0x80));
                v >>>= 7;
            }
            write((int) v);
        }

        void varint(int number, long v) {
            if (v != 0) varintAlways(number, v);
        }

        void varintAlways(int number, long v) {
            uvarint(number << 1);
            uvarint(v);
        }

        void string(int number, String s) {
            if (!s.isEmpty()) bytes(number, s.getBytes(StandardCharsets.UTF_8), true);
        }

        void bytes(int number, byte[] b, boolean always) {
            if (b.length == 0 && !always) return;
            uvarint(number << 1 | 1);
            uvarint(b.length);
            write(b, 0, b.length);
        }
    }

    private static final class In {
        final byte[] b;
        int pos;

        In(byte[] b, int pos) {
            this.b = b;
            this.pos = pos;
        }

        long uvarint() throws ProtocolException {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                if (pos >= b.length) throw new ProtocolException("varint runs past the frame");
                int c = b[pos++] & 0xff;
                if (shift == 63 && c > 1) throw new ProtocolException("varint overflows 64 bits");
                v |= (long) (c & 0x7f) << shift;
                if (c < 0x80) return v;
            }
            throw new ProtocolException("varint overflows 64 bits");
        }

        int uvarintInt() throws ProtocolException {
            long v = uvarint();
            if (v < 0 || v > Integer.MAX_VALUE) throw new ProtocolException("length or tag out of range");
            return (int) v;
        }
    }
}
