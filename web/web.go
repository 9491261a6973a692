// Package web serves the live page: a browser view of the server's pub-sub
// endpoints that subscribes to a topic and shows its records as they arrive.
// The page is built from clients/js (`npm run build` there writes static/)
// and embedded, so the server needs no files and no network at run time.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	"github.com/envoy-pubsub/gateway/server"
)

//go:embed static
var static embed.FS

// AssetPrefix is the path under which the page's scripts, styles and site
// description are served. A pub-sub endpoint of that name would be hidden.
const AssetPrefix = "/_page/"

// Site is what the page learns about the server from AssetPrefix+"site.json".
// It is read-only and holds no secrets: endpoint names and a topic hint.
type Site struct {
	// Clusters are the names of the pub-sub endpoints, ws://HOST/NAME.
	Clusters []string `json:"clusters"`
	// Topic is the topic the page opens on without any input; empty leaves
	// the choice to the user.
	Topic string `json:"topic,omitempty"`
}

// Handler serves the page at "/" and its assets under AssetPrefix to plain
// GET and HEAD requests; everything else (WebSocket upgrades, endpoint paths)
// goes to next.
func Handler(site Site, next http.Handler) (http.Handler, error) {
	if site.Clusters == nil {
		site.Clusters = []string{}
	}
	siteJSON, err := json.Marshal(site)
	if err != nil {
		return nil, err
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix(AssetPrefix, http.FileServerFS(assets))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		setHeaders(w, "text/html; charset=utf-8")
		w.Write(index)
	})
	mux.HandleFunc("GET "+AssetPrefix+"site.json", func(w http.ResponseWriter, _ *http.Request) {
		setHeaders(w, "application/json")
		w.Write(siteJSON)
	})
	mux.HandleFunc("GET "+AssetPrefix, func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w, "")
		files.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if server.IsUpgrade(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		if h, pattern := mux.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

// setHeaders marks a response of the page: revalidated on every load (the
// assets change with the server binary), and confined to its own origin.
func setHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}
