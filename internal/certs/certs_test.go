package certs

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writePair(t *testing.T, dir string, hosts ...string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	certFile, keyFile, certPEM, err := WriteSelfSigned(dir, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if leaf, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, leaf
}

// A self-signed certificate names its hosts, and verifies against itself
// as the CA (that is how clients trust it in tests).
func TestWriteSelfSigned(t *testing.T) {
	_, _, leaf := writePair(t, t.TempDir(), "localhost", "127.0.0.1")
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("names %v, addresses %v", leaf.DNSNames, leaf.IPAddresses)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
		t.Error("verified for a host it does not name")
	}
}

// Reload serves the new pair; a pair that does not load leaves the old one
// in use and says which files.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := writePair(t, dir, "localhost")
	k, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		c, err := k.Config().GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	if !served().Equal(first) {
		t.Fatal("the loaded certificate is not served")
	}
	_, _, second := writePair(t, dir, "localhost")
	if err := k.Reload(); err != nil || !served().Equal(second) {
		t.Fatalf("reload: %v; new certificate served: %v", err, served().Equal(second))
	}
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	if err := k.Reload(); err == nil || !served().Equal(second) {
		t.Fatalf("reload of a bad key: %v; the previous certificate must stay", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.pem"), keyFile); err == nil {
		t.Fatal("loaded a missing file")
	}
}
