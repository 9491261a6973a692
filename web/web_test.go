package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/config"
)

func serve(t *testing.T, h http.Handler, method, path string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesThePageItsAssetsAndTheSiteAndPassesEverythingElse(t *testing.T) {
	var passed []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed = append(passed, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	site := Site{Clusters: []string{"kafka", "audit"}, Topic: "demo"}
	h, err := Handler(site, next)
	if err != nil {
		t.Fatal(err)
	}

	resp := serve(t, h, "GET", "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `src="_page/app.js"`) ||
		resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self'") {
		t.Fatalf("GET /: %d %v\n%.200s", resp.StatusCode, resp.Header, body)
	}

	resp = serve(t, h, "GET", AssetPrefix+"site.json", nil)
	var got Site
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 ||
		strings.Join(got.Clusters, ",") != "kafka,audit" || got.Topic != "demo" {
		t.Fatalf("site.json: %d %+v %v", resp.StatusCode, got, err)
	}

	for file, contentType := range map[string]string{"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"} {
		resp = serve(t, h, "GET", AssetPrefix+file, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
			t.Errorf("%s: %d %q", file, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if resp := serve(t, h, "HEAD", "/", nil); resp.StatusCode != 200 {
		t.Errorf("HEAD /: %d", resp.StatusCode)
	}

	// Endpoints, upgrades (even of "/") and other methods belong to next.
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	serve(t, h, "GET", "/kafka", nil)
	serve(t, h, "GET", "/kafka", upgrade)
	serve(t, h, "GET", "/", upgrade)
	serve(t, h, "POST", "/", nil)
	serve(t, h, "GET", "/other", nil)
	if want := "GET /kafka,GET /kafka,GET /,POST /,GET /other"; strings.Join(passed, ",") != want {
		t.Fatalf("passed on: %s, want %s", strings.Join(passed, ","), want)
	}
}

func TestSiteWithoutClustersIsAnEmptyList(t *testing.T) {
	h, err := Handler(Site{}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(serve(t, h, "GET", AssetPrefix+"site.json", nil).Body)
	if string(body) != `{"clusters":[]}` {
		t.Fatalf("site.json: %s", body)
	}
}

func TestAssetsCarryAnETagAndGoGzippedToClientsThatTakeIt(t *testing.T) {
	h, err := Handler(Site{Clusters: []string{"kafka"}}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", AssetPrefix + "app.js", AssetPrefix + "style.css", AssetPrefix + "site.json"} {
		plain := serve(t, h, "GET", p, nil)
		body, _ := io.ReadAll(plain.Body)
		etag := plain.Header.Get("ETag")
		if plain.StatusCode != 200 || plain.Header.Get("Content-Encoding") != "" || !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
			t.Fatalf("GET %s: %d %v", p, plain.StatusCode, plain.Header)
		}
		zipped := serve(t, h, "GET", p, http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
		if p != AssetPrefix+"site.json" { // too small to gain from gzip
			zr, err := gzip.NewReader(zipped.Body)
			if err != nil || zipped.Header.Get("Content-Encoding") != "gzip" || zipped.Header.Get("ETag") != etag {
				t.Fatalf("GET %s gzip: %v %v", p, zipped.Header, err)
			}
			unzipped, _ := io.ReadAll(zr)
			if !bytes.Equal(unzipped, body) || zipped.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("GET %s gzip: the body differs, or no Vary", p)
			}
		}
		if r := serve(t, h, "GET", p, http.Header{"Accept-Encoding": {"gzip;q=0"}}); r.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET %s: gzip sent to a client that refused it", p)
		}
		notModified := serve(t, h, "GET", p, http.Header{"If-None-Match": {`"other", ` + etag}})
		if b, _ := io.ReadAll(notModified.Body); notModified.StatusCode != http.StatusNotModified || len(b) != 0 {
			t.Fatalf("GET %s If-None-Match: %d, %d bytes", p, notModified.StatusCode, len(b))
		}
	}
}

func TestSiteOfOffersTheTopicsAnAllowListNamesExactly(t *testing.T) {
	doc := &config.Document{KafkaClusters: map[string]*config.KafkaCluster{
		"kafka": {Topics: []string{"orders", "events-*", "audit", "log.[ab]"}},
		"open":  {},
	}}
	site := SiteOf(doc)
	got, _ := json.Marshal(site)
	if want := `{"clusters":["kafka","open"],"topics":{"kafka":["orders","audit"]}}`; string(got) != want {
		t.Fatalf("site: %s, want %s", got, want)
	}
}
