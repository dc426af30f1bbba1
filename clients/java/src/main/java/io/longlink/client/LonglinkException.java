package io.longlink.client;

/**
 * An error from the server (an error op: its code, reason and, when it ends
 * one app's session only, the app), or from the client itself (code 0).
 */
public class LonglinkException extends Exception {
    private static final long serialVersionUID = 1L;

    private final int code;
    private final String reason;
    private final String app;

    public LonglinkException(int code, String reason, String app) {
        super(code != 0 ? "longlink " + code + ": " + reason : reason);
        this.code = code;
        this.reason = reason;
        this.app = app == null ? "" : app;
    }

    LonglinkException(String reason, Throwable cause) {
        super(reason, cause);
        this.code = 0;
        this.reason = reason;
        this.app = "";
    }

    /** The code (see {@link Code}), or 0 for an error of the client's own. */
    public int code() {
        return code;
    }

    public String reason() {
        return reason;
    }

    /** The app whose session alone it ended, or "". */
    public String app() {
        return app;
    }
}
