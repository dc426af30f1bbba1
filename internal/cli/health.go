package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// health asks a server's /healthz, for a container's HEALTHCHECK (an image
// with nothing but longlink has no curl): exit 0 when it answers 200.
func health(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("health", stderr)
	target := fs.String("url", "http://127.0.0.1:8080/healthz", "the server's health `URL` (its API's, or its ops port's)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err // said once: it names the URL too
	}
	if err != nil {
		return fmt.Errorf("%s: no answer: %w", *target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", *target, resp.Status, body)
	}
	_, err = fmt.Fprintf(stdout, "%s", body)
	return err
}
