package cli

import (
	"fmt"
	"io"

	"github.com/longlink/longlink/internal/version"
)

func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	v := version.Get()
	rev := v.Revision
	if rev == "" {
		rev = "unknown revision"
	}
	_, err := fmt.Fprintf(stdout, "longlink %s (%s, %s)\n", v.Version, rev, v.Go)
	return err
}
