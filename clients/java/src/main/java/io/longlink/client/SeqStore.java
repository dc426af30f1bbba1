package io.longlink.client;

import java.io.IOException;

/**
 * Keeps each app's last handled and acked stored seq, so that a new process
 * resumes after it. An Android app plugs in SharedPreferences or Room; the
 * SDK has {@link MemorySeqStore} and {@link FileSeqStore}.
 */
public interface SeqStore {
    /** The app's last seq, 0 if none. */
    long get(String app) throws IOException;

    /** Keeps seq as the app's last seq. Called on the client's own thread, after each batch of acks. */
    void set(String app, long seq) throws IOException;
}
