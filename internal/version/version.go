// Package version tells which longlink this binary is, from what the Go
// toolchain stamped into it: the module version (a tag, or a pseudo-version)
// and the VCS revision it was built from; or, where VCS stamping is off
// (scripts/release builds with -trimpath from any tree), from what the
// linker set:
//
//	-ldflags "-X github.com/longlink/longlink/internal/version.version=v1.2.3
//	          -X github.com/longlink/longlink/internal/version.revision=<commit>"
package version

import (
	"cmp"
	"runtime"
	"runtime/debug"
)

// version and revision, when the linker sets them (-X), win over what the
// toolchain stamped.
var version, revision string

// Info describes this build.
type Info struct {
	Version  string // module version; "(devel)" for a build from a work tree
	Revision string // VCS revision, with "-dirty" for uncommitted changes; "" if unknown
	Go       string // the Go version that built it
}

// Get returns this binary's build information.
func Get() Info {
	info := stamped()
	info.Version = cmp.Or(version, info.Version)
	info.Revision = cmp.Or(revision, info.Revision)
	return info
}

// stamped is what the toolchain stamped into the binary.
func stamped() Info {
	info := Info{Version: "(devel)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Revision != "" {
		info.Revision += "-dirty"
	}
	return info
}
