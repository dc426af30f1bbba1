package io.longlink.client;

/** Error and close codes (docs/protocol.md). */
public final class Code {
    public static final int BAD_FRAME = 4000;
    public static final int AUTH_FAILED = 4001;
    public static final int LOGIN_TIMEOUT = 4002;
    public static final int REPLACED = 4003;
    public static final int TOO_SLOW = 4004;
    public static final int RATE_LIMITED = 4005;
    public static final int FRAME_TOO_LARGE = 4006;
    public static final int HEARTBEAT_TIMEOUT = 4007;
    public static final int KICKED = 4008;
    public static final int GOING_AWAY = 4009;
    public static final int UPSTREAM_UNAVAILABLE = 4010;
    public static final int TOKEN_EXPIRED = 4011;
    public static final int NOT_ALLOWED = 4012;
    public static final int DRAINING = 4013;

    private Code() {}
}
