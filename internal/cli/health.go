package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// healthCmd asks a server's /healthz, for a container's HEALTHCHECK (an
// image with nothing but longlink has no curl): exit 0 when it answers 200.
func healthCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("health", stderr)
	target := fs.String("url", "http://127.0.0.1:8080/healthz", "the server's health `URL` (its API's, or its ops port's)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body, err := health(ctx, *target)
	if err != nil {
		return err
	}
	_, err = stdout.Write(body)
	return err
}

// errNoAnswer is health's error when nothing answered.
var errNoAnswer = errors.New("no answer")

// health asks target (a /healthz) and returns its answer if it is a 200.
func health(ctx context.Context, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", target, errNoAnswer, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", target, resp.Status, body)
	}
	return body, nil
}

// unwrapURL is err without the *url.Error around it, which names the URL
// the message names already.
func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
