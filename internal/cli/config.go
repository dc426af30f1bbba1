package cli

import (
	"io"

	"github.com/longlink/longlink/internal/config"
)

// configCmd prints the config serve would run with (the file, under the
// environment's keys; without a file, the demo node's), its secrets
// masked; or, with --example, a complete commented config file.
func configCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config", stderr)
	path := fs.String("config", "", "YAML config `file`; without it: the environment's apps, or the demo node's")
	example := fs.Bool("example", false, "print a complete config file instead: every key, its default, what it is for, its environment variable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *example {
		_, err := stdout.Write(config.Example())
		return err
	}
	cfg, err := config.LoadOrDemo(*path, false)
	if err != nil {
		return err
	}
	out, err := cfg.Print()
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
