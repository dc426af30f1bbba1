package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/longlink/longlink/internal/certs"
	"github.com/longlink/longlink/internal/config"
)

// cert writes a self-signed certificate and key for local tests.
func cert(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cert", stderr)
	var hosts listFlag
	fs.Var(&hosts, "host", "a name or IP address the certificate is for (repeatable; default: localhost, 127.0.0.1, ::1)")
	dir := fs.String("dir", ".", "directory to write cert.pem and key.pem to")
	valid := fs.Duration("valid", 365*24*time.Hour, "how long the certificate is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(hosts) == 0 {
		hosts = listFlag{"localhost", "127.0.0.1", "::1"}
	}
	if *valid <= 0 {
		return fmt.Errorf("--valid: %v is not a positive duration", *valid)
	}
	for _, name := range []string{"cert.pem", "key.pem"} {
		f := filepath.Join(*dir, name)
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists; remove it or choose another --dir", f)
		}
	}
	certFile, keyFile, _, err := certs.WriteSelfSigned(*dir, hosts, *valid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s: self-signed for %v, valid %v; for tests only\n\n", certFile, keyFile, []string(hosts), *valid)
	fmt.Fprintf(stdout, "In the config:\n  tls: {cert_file: %s, key_file: %s}\n\n", certFile, keyFile)
	fmt.Fprintf(stdout, "Clients trust it as their CA, e.g.:\n  %s listen --config FILE --device d1 --tls --ca %s\n", self(), certFile)
	return nil
}

// tlsFlags are the flags of a command that may speak TLS to longlink.
type tlsFlags struct {
	ca       *string
	insecure *bool
}

func addTLSFlags(fs *flag.FlagSet) tlsFlags {
	return tlsFlags{
		ca:       fs.String("ca", "", "PEM `file` of the CA to trust (default: the system's, and the config's tls.cert_file)"),
		insecure: fs.Bool("insecure", false, "trust any certificate (a self-signed one in development); never in production"),
	}
}

// given reports whether --ca or --insecure was given: TLS is meant.
func (f tlsFlags) given() bool { return *f.ca != "" || *f.insecure }

// config returns the client TLS configuration the flags ask for. cfg, if
// not nil, is the server's config: its certificate is trusted too.
func (f tlsFlags) config(cfg *config.Config) (*tls.Config, error) {
	var pem []byte
	if *f.ca != "" {
		raw, err := os.ReadFile(*f.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pem = raw
	}
	conf, err := certs.ClientConfig(pem, *f.insecure)
	if err != nil {
		return nil, fmt.Errorf("--ca %s: %w", *f.ca, err)
	}
	if cfg != nil && cfg.TLS.Enabled() {
		raw, err := os.ReadFile(cfg.TLS.CertFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		if conf.RootCAs == nil {
			if conf.RootCAs, err = x509.SystemCertPool(); err != nil {
				conf.RootCAs = x509.NewCertPool()
			}
		}
		if !conf.RootCAs.AppendCertsFromPEM(raw) {
			return nil, errors.New("tls.cert_file: no PEM certificate found")
		}
	}
	return conf, nil
}
