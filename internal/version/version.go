// Package version tells which longlink this binary is, from what the Go
// toolchain stamped into it: the module version (a tag, or a pseudo-version)
// and the VCS revision it was built from.
package version

import (
	"runtime"
	"runtime/debug"
)

// Info describes this build.
type Info struct {
	Version  string // module version; "(devel)" for a build from a work tree
	Revision string // VCS revision, with "-dirty" for uncommitted changes; "" if unknown
	Go       string // the Go version that built it
}

// Get returns this binary's build information.
func Get() Info {
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
