// Package web serves longlink's pages: the operators' dashboard on the ops
// surface (guarded by the ops token, or the session its login form sets),
// and in demo mode the demo page, a device in the browser built on the JS
// SDK. Every file is embedded in the binary: nothing comes from a CDN.
package web

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	longlinkjs "github.com/longlink/longlink/clients/js"
	"github.com/longlink/longlink/internal/api"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
)

//go:embed assets
var assets embed.FS

// files is assets without its directory name.
var files, _ = fs.Sub(assets, "assets")

// Dashboard adds /dashboard and its files to the ops surface of a. A
// browser without the ops token gets the login page (401).
func Dashboard(a *api.Server) {
	login := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		serveFile(w, "login.html", http.StatusUnauthorized)
	}
	a.HandleOps("GET /dashboard", a.OpsOnly(file("dashboard.html"), login))
	for _, name := range []string{"dashboard.js", "pause.js", "style.css"} {
		a.HandleOps("GET /dashboard/"+name, a.OpsOnly(file(name), login))
	}
	// The browser asks every page's host for it: the dashboard's, the
	// demo's, and a bare API port opened in a tab.
	a.HandleEverywhere("GET /favicon.ico", file("favicon.svg"))
}

// Demo adds the demo page to the API's port of a: /demo, the JS SDK at
// /demo/longlink.js, and /demo/device, which mints a token for the demo
// app (the page's device) and tells the page where the gateway is and
// the app's API key, so that it can push. Demo mode only (which has no
// TLS: it has no config file): it gives the demo app's credentials to
// whoever reaches the API's port (127.0.0.1 by default).
func Demo(a *api.Server, app config.App, gatewayAddr string) {
	a.HandleAPI("GET /demo", file("demo.html"))
	for _, name := range []string{"demo.js", "style.css"} {
		a.HandleAPI("GET /demo/"+name, file(name))
	}
	a.HandleAPI("GET /demo/longlink.js", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(w, "longlink.js", longlinkjs.Module, http.StatusOK)
	}))
	a.HandleAPI("GET /demo/device", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !loopbackHost(r.Host) { // a page of another site whose name was rebound to this machine
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]string{"error": "the demo's credentials are given at a loopback address only (localhost, 127.0.0.1, [::1])"})
			return
		}
		device := r.URL.Query().Get("device")
		if device == "" {
			device = "web-" + randomHex(4)
		}
		token, err := auth.Mint(app.ID, app.Secret, device, "", time.Hour)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"app": app.ID, "device": device, "token": token,
			"url": "ws://" + gatewayAddr + "/ws", "api_key": app.APIKey})
	}))
}

// loopbackHost reports whether a request's Host names this machine by a
// loopback name or address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// file serves the embedded file name.
func file(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveFile(w, name, http.StatusOK) })
}

// serveFile writes the embedded file name with status.
func serveFile(w http.ResponseWriter, name string, status int) {
	b, err := fs.ReadFile(files, name)
	if err != nil { // a name in this package that is not embedded
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	write(w, name, b, status)
}

var contentTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

// write answers b, the content of a file named name, with status.
func write(w http.ResponseWriter, name string, b []byte, status int) {
	w.Header().Set("Content-Type", contentTypes[path.Ext(name)])
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
