package io.longlink.client;

import java.io.IOException;

/**
 * Keeps each app's last handled and acked stored seq (its mailbox) and bseq
 * (its broadcast log), so that a new process resumes after them. An Android
 * app plugs in SharedPreferences or Room; the SDK has {@link MemorySeqStore}
 * and {@link FileSeqStore}. Called on the client's own threads, after each
 * batch of acks.
 */
public interface SeqStore {
    /** The app's last seq, 0 if none. */
    long get(String app) throws IOException;

    /** Keeps seq as the app's last seq. */
    void set(String app, long seq) throws IOException;

    /**
     * The app's last bseq, 0 if none. A store that keeps none (this
     * default) costs nothing: the server keeps each device's place in the
     * broadcast log as its acks move it.
     */
    default long getBSeq(String app) throws IOException {
        return 0;
    }

    /** Keeps bseq as the app's last bseq. */
    default void setBSeq(String app, long bseq) throws IOException {}
}
