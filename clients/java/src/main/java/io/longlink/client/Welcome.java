package io.longlink.client;

import java.util.Collections;
import java.util.List;

/** What the server granted at login. */
public final class Welcome {
    private final String device;
    private final List<String> apps;
    private final long heartbeatSeconds;

    Welcome(String device, List<String> apps, long heartbeatSeconds) {
        this.device = device;
        this.apps = Collections.unmodifiableList(apps);
        this.heartbeatSeconds = heartbeatSeconds;
    }

    public String device() {
        return device;
    }

    /** The apps this connection is logged into. */
    public List<String> apps() {
        return apps;
    }

    /** The heartbeat granted, in seconds: the client pings once per heartbeat. */
    public long heartbeatSeconds() {
        return heartbeatSeconds;
    }
}
