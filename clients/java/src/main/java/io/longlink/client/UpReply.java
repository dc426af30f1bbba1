package io.longlink.client;

import java.nio.charset.StandardCharsets;

/** The app backend's answer to an up: its HTTP status and body. */
public final class UpReply {
    private final int status;
    private final byte[] data;

    UpReply(int status, byte[] data) {
        this.status = status;
        this.data = data;
    }

    public int status() {
        return status;
    }

    public byte[] data() {
        return data.clone();
    }

    public String text() {
        return new String(data, StandardCharsets.UTF_8);
    }
}
