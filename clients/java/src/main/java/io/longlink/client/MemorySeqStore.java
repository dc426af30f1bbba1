package io.longlink.client;

import java.util.concurrent.ConcurrentHashMap;

/** Keeps seqs in memory: lost when the process ends. */
public final class MemorySeqStore implements SeqStore {
    private final ConcurrentHashMap<String, Long> seqs = new ConcurrentHashMap<>(), bseqs = new ConcurrentHashMap<>();

    @Override
    public long get(String app) {
        return seqs.getOrDefault(app, 0L);
    }

    @Override
    public void set(String app, long seq) {
        seqs.put(app, seq);
    }

    @Override
    public long getBSeq(String app) {
        return bseqs.getOrDefault(app, 0L);
    }

    @Override
    public void setBSeq(String app, long bseq) {
        bseqs.put(app, bseq);
    }
}
