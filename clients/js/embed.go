// Package longlinkjs holds longlink's JavaScript SDK (an npm package, in
// src/) and gives its module to the Go server, which serves it to the demo
// page and the dashboard from the binary.
package longlinkjs

import _ "embed"

// Module is the SDK's ES module, src/longlink.js.
//
//go:embed src/longlink.js
var Module []byte
