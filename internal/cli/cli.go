// Package cli implements longlink's subcommands: one file each.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const usage = `longlink: a long-connection push server

Usage:
  longlink serve  [--config FILE]                    run every role in one process
  longlink token  [--config FILE] --device D [--app A] [--user U] [--ttl 24h]
                                                     print a device token
  longlink listen --token JWT [--addr HOST:PORT] [--transport tcp|ws|ws-json]
                  [--tls [--ca FILE | --insecure]]   connect as a device and print every push
  longlink push   [--app A] (--device D... | --user U... | --group G | --broadcast) DATA|-
                                                     push through the HTTP API (- reads stdin)
  longlink bench  SCENARIO [--gateway H:P --api URL] [-n N] [--rate R] [--json]
                                                     load a running server and measure it
  longlink cert   [--host H]... [--dir DIR]          write a self-signed TLS certificate for local tests
  longlink demo-credentials                          print the demo app's API key and secret
  longlink health [--url URL]                        exit 0 if the server's /healthz answers 200 (a container's HEALTHCHECK)
  longlink config [--config FILE] [--example]        print the config serve would run with (secrets masked), or a complete example
  longlink drain  [--url URL] [--wait]               drain a node (its devices move to the others); --wait until it stopped
  longlink version                                   print which longlink this is

Run 'longlink COMMAND --help' for a command's flags.
`

// command is one subcommand: it parses args and runs.
type command func(args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"serve":            serve,
	"token":            token,
	"listen":           listen,
	"push":             push,
	"bench":            benchCmd,
	"version":          versionCmd,
	"demo-credentials": demoCredentials,
	"cert":             cert,
	"health":           healthCmd,
	"drain":            drainCmd,
	"config":           configCmd,
	"bench-worker":     benchWorker, // not in the usage: started by bench itself
}

// Main runs the subcommand named by args[0] and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "longlink: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "longlink %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// newFlags returns a flag set that reports errors instead of exiting. On a
// bad flag it prints its usage to stderr, and leaves the error to Main, so
// that it is said once, after the usage.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("longlink "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { printUsage(fs, stderr, "Usage of "+fs.Name()+":\n") }
	return fs
}

// printUsage writes head, then fs's flags, to w.
func printUsage(fs *flag.FlagSet, w io.Writer, head string) {
	fmt.Fprint(w, head)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// stdin is what `push -` reads; tests replace it.
var stdin io.Reader = os.Stdin

// parseInterspersed parses flags given before, between and after the
// positional arguments (the flag package stops at the first of those), and
// returns the positional ones. "--" ends the flags; "-" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// self is how the user ran this binary, for commands we print to paste:
// "go run ./cmd/longlink" under go run, else the program's name.
func self() string {
	if strings.Contains(os.Args[0], "go-build") {
		return "go run ./cmd/longlink"
	}
	return filepath.Base(os.Args[0])
}
