package io.longlink.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;

/**
 * Keeps seqs in a properties file (app=seq, and bseq.app=bseq), written
 * whole to a temporary file and renamed over the old one, so that a crash
 * leaves the old file or the new, never half of one.
 */
public final class FileSeqStore implements SeqStore {
    private final Path file;
    private final Properties seqs = new Properties();

    public FileSeqStore(Path file) throws IOException {
        this.file = file;
        try (InputStream in = Files.newInputStream(file)) {
            seqs.load(in);
        } catch (NoSuchFileException e) {
            // a new store
        }
    }

    @Override
    public long get(String app) {
        return read(app);
    }

    @Override
    public void set(String app, long seq) throws IOException {
        write(app, seq);
    }

    @Override
    public long getBSeq(String app) {
        return read("bseq." + app);
    }

    @Override
    public void setBSeq(String app, long bseq) throws IOException {
        write("bseq." + app, bseq);
    }

    private synchronized long read(String key) {
        try {
            return Long.parseLong(seqs.getProperty(key, "0"));
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    private synchronized void write(String key, long value) throws IOException {
        seqs.setProperty(key, Long.toString(value));
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (OutputStream out = Files.newOutputStream(tmp)) {
            seqs.store(out, "longlink: the last stored seq handled, per app");
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
