// Command longlink is the long-connection push server, its device client and
// its tools in one binary. Run `longlink help` for the subcommands.
package main

import (
	"os"

	"github.com/longlink/longlink/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
