package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
)

func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	path := fs.String("config", "", "YAML config `file`; without it: the demo app in ./longlink-data")
	app := fs.String("app", "", "app id (default: the only app, or demo)")
	device := fs.String("device", "", "device id (required)")
	user := fs.String("user", "", "user id to bind the device to")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	var groups listFlag
	fs.Var(&groups, "group", "a group the device may join itself: a name, or a prefix ending in * (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *device == "" {
		return errors.New("--device is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl: %v would print a token that has expired already; give a positive duration such as 24h", *ttl)
	}
	cfg, err := config.LoadOrDemo(*path, false)
	if err != nil {
		return err
	}
	a, err := pickApp(cfg, *app)
	if err != nil {
		return err
	}
	tok, err := auth.MintClaims(a.Secret, auth.Claims{App: a.ID, Device: *device, User: *user, Groups: groups}, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// pickApp returns the app named id, or the only app when id is empty.
func pickApp(cfg *config.Config, id string) (*config.App, error) {
	if id == "" {
		if len(cfg.Apps) != 1 {
			return nil, errors.New("--app is required: the config has several apps")
		}
		return &cfg.Apps[0], nil
	}
	a, ok := config.NewAppSet(cfg.Apps).ByID(id)
	if !ok {
		return nil, fmt.Errorf("--app: no app %q in the config", id)
	}
	return a, nil
}
