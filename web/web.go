// Package web serves the live page: a browser view of the server's pub-sub
// endpoints that subscribes to a topic and shows its records as they arrive.
// The page is built from clients/js (`npm run build` there writes static/)
// and embedded, so the server needs no files and no network at run time.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/envoy-pubsub/gateway/config"
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
	// Topics are, per cluster, the topic names its allow-list names
	// exactly (globs cannot be listed), which the page offers; a cluster
	// without an allow-list, or with globs only, has none.
	Topics map[string][]string `json:"topics,omitempty"`
}

// SiteOf describes a configuration's clusters and the topics their
// allow-lists name exactly.
func SiteOf(doc *config.Document) Site {
	site := Site{Clusters: doc.ClusterNames()}
	for name, c := range doc.KafkaClusters {
		for _, t := range c.Topics {
			if strings.ContainsAny(t, `*?[\`) {
				continue
			}
			if site.Topics == nil {
				site.Topics = map[string][]string{}
			}
			site.Topics[name] = append(site.Topics[name], t)
		}
	}
	return site
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
	files := map[string]*asset{AssetPrefix + "site.json": newAsset(siteJSON, "application/json")}
	err = fs.WalkDir(assets, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(assets, name)
		if err != nil {
			return err
		}
		a := newAsset(body, mime.TypeByExtension(path.Ext(name)))
		if name == "index.html" {
			files["/"] = a
		} else {
			files[AssetPrefix+name] = a
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if files["/"] == nil {
		return nil, fs.ErrNotExist
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if server.IsUpgrade(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		if a := files[r.URL.Path]; a != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			a.serve(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

// asset is one response of the page, prepared once: its bytes, their
// gzip encoding when that is smaller, and an ETag of the content.
type asset struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

func newAsset(body []byte, contentType string) *asset {
	sum := sha256.Sum256(body)
	a := &asset{body: body, contentType: contentType, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(body)
	zw.Close()
	if buf.Len() < len(body) {
		a.gzipped = buf.Bytes()
	}
	return a
}

// serve answers with the asset: 304 when the client holds this version,
// gzip when the client accepts it.
func (a *asset) serve(w http.ResponseWriter, r *http.Request) {
	setHeaders(w, a.contentType)
	h := w.Header()
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	if matches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gzipped != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = a.gzipped
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// matches reports whether an If-None-Match header names etag (or is "*").
func matches(ifNoneMatch, etag string) bool {
	for _, t := range strings.Split(ifNoneMatch, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(acceptEncoding string) bool {
	for _, e := range strings.Split(acceptEncoding, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(e), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// setHeaders marks a response of the page: revalidated on every load (the
// assets change with the server binary, and the ETag makes that cheap),
// and confined to its own origin.
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
