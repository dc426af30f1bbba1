package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/longlink/longlink/internal/config"
)

// drainCmd drains a node (POST /v1/admin/drain) and, with --wait, waits
// until it has stopped: a Kubernetes preStop hook, a systemd ExecStop.
func drainCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drain", stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "the node's API (or ops port) base `URL`")
	token := fs.String("token", "", "the ops `token` (default: LONGLINK_OPS_TOKEN or LONGLINK_OPS_TOKEN_FILE, as the server takes it)")
	node := fs.String("node", "", "drain this `node` of the cluster instead (asked through --url's)")
	wait := fs.Bool("wait", false, "wait until the node has drained and stopped (its /healthz no longer answers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *wait && *node != "" {
		return errors.New("--wait waits for the node at --url: give --node or --wait, not both")
	}
	if *token == "" {
		var err error
		if *token, _, err = config.FromEnv("ops.token"); err != nil {
			return err
		}
	}
	target := *base + "/v1/admin/drain"
	if *node != "" {
		target += "?node=" + url.QueryEscape(*node)
	}
	ask, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a stalled node must not hold a preStop hook
	defer cancel()
	req, err := http.NewRequestWithContext(ask, http.MethodPost, target, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: no answer: %w", *base, unwrapURL(err))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s answered %s: %s", target, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s\n", body)
	if !*wait {
		return nil
	}
	var out struct {
		DrainPeriodMS int64 `json:"drain_period_ms"`
	}
	json.Unmarshal(body, &out)
	// The node stops when its last connection has gone, or at the end of
	// its drain period plus 5 s: wait that, and a little more.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(out.DrainPeriodMS)*time.Millisecond+10*time.Second)
	defer cancel()
	for {
		if _, err := health(ctx, *base+"/healthz"); errors.Is(err, errNoAnswer) {
			fmt.Fprintln(stdout, "drained: the node has stopped")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still answers: the node has not stopped in its drain period", *base)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
