package filter

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// Fakes of the Envoy side of the api interfaces, in the style of HTNN's
// test framework: enough of Envoy for DecodeHeaders, Parse and the stats.

// envoyLog captures what the plugin logs through the api package.
type envoyLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *envoyLog) Log(level api.LogType, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level.String()+" "+msg)
}

func (l *envoyLog) LogLevel() api.LogType { return api.Debug }

func (l *envoyLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

var testLog = &envoyLog{}

func TestMain(m *testing.M) {
	api.SetCommonCAPI(testLog)
	m.Run()
}

// requestHeaders is a request header map that records mutations.
type requestHeaders struct {
	api.RequestHeaderMap // methods the filter must not use panic
	h                    map[string][]string
	mutations            []string
}

func newHeaders(kv ...string) *requestHeaders {
	h := &requestHeaders{h: make(map[string][]string)}
	for i := 0; i < len(kv); i += 2 {
		k := strings.ToLower(kv[i])
		h.h[k] = append(h.h[k], kv[i+1])
	}
	return h
}

func (h *requestHeaders) Get(key string) (string, bool) {
	v := h.h[strings.ToLower(key)]
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (h *requestHeaders) Values(key string) []string { return h.h[strings.ToLower(key)] }

func (h *requestHeaders) Range(f func(key, value string) bool) {
	for k, vs := range h.h {
		for _, v := range vs {
			if !f(k, v) {
				return
			}
		}
	}
}

func (h *requestHeaders) Set(key, value string) {
	h.mutations = append(h.mutations, "set "+key)
	h.h[strings.ToLower(key)] = []string{value}
}

func (h *requestHeaders) Add(key, value string) {
	h.mutations = append(h.mutations, "add "+key)
	h.h[strings.ToLower(key)] = append(h.h[strings.ToLower(key)], value)
}

func (h *requestHeaders) Del(key string) {
	h.mutations = append(h.mutations, "del "+key)
	delete(h.h, strings.ToLower(key))
}

// localReply is a recorded SendLocalReply.
type localReply struct {
	status  int
	body    string
	headers map[string][]string
	details string
}

// callbacks is the per-request Envoy side: stream info with the routed
// cluster, a secret store, and the decoder callbacks that record replies.
type callbacks struct {
	api.FilterCallbackHandler // methods the filter must not use panic
	cluster                   string
	hasCluster                bool
	secrets                   map[string]string
	secretReads               []string
	replies                   []localReply
	// metadata is the request's dynamic metadata, by namespace.
	metadata map[string]map[string]interface{}
}

func routedTo(cluster string) *callbacks {
	return &callbacks{cluster: cluster, hasCluster: cluster != "", secrets: map[string]string{}}
}

func (c *callbacks) StreamInfo() api.StreamInfo                         { return streamInfo{c: c} }
func (c *callbacks) SecretManager() api.SecretManager                   { return secretManager{c} }
func (c *callbacks) DecoderFilterCallbacks() api.DecoderFilterCallbacks { return decoderCallbacks{c} }

type streamInfo struct {
	api.StreamInfo // methods the filter must not use panic
	c              *callbacks
}

func (s streamInfo) UpstreamClusterName() (string, bool)  { return s.c.cluster, s.c.hasCluster }
func (s streamInfo) DynamicMetadata() api.DynamicMetadata { return dynamicMetadata{s.c} }

type dynamicMetadata struct {
	*callbacks
}

// Get returns a copy of the namespace's metadata, as the SDK decodes a
// fresh one from Envoy on every call.
func (d dynamicMetadata) Get(namespace string) map[string]interface{} {
	return maps.Clone(d.metadata[namespace])
}

func (d dynamicMetadata) Set(string, string, interface{}) { panic("the filter never writes metadata") }

type secretManager struct {
	*callbacks
}

func (s secretManager) GetGenericSecret(name string) (string, bool) {
	s.secretReads = append(s.secretReads, name)
	v, ok := s.secrets[name]
	return v, ok
}

type decoderCallbacks struct {
	*callbacks
}

func (d decoderCallbacks) SendLocalReply(status int, body string, headers map[string][]string, _ int64, details string) {
	d.replies = append(d.replies, localReply{status: status, body: body, headers: headers, details: details})
}

func (d decoderCallbacks) Continue(api.StatusType)                    { panic("DecodeHeaders must decide synchronously") }
func (d decoderCallbacks) RecoverPanic()                              {}
func (d decoderCallbacks) AddData([]byte, bool)                       { panic("unused") }
func (d decoderCallbacks) InjectData([]byte)                          { panic("unused") }
func (d decoderCallbacks) SetUpstreamOverrideHost(string, bool) error { panic("unused") }

// configCallbacks is the filter-level Parse's callback handler: a stats
// store. After destroy, metric calls panic as the SDK's do once Envoy has
// destroyed the config.
type configCallbacks struct {
	mu        sync.Mutex
	values    map[string]int64
	destroyed bool
}

func newConfigCallbacks() *configCallbacks { return &configCallbacks{values: make(map[string]int64)} }

func (c *configCallbacks) DefineCounterMetric(name string) api.CounterMetric {
	return &metric{store: c, name: name}
}

func (c *configCallbacks) DefineGaugeMetric(name string) api.GaugeMetric {
	return &metric{store: c, name: name, gauge: true}
}

func (c *configCallbacks) value(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[name]
}

func (c *configCallbacks) destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.destroyed = true
}

type metric struct {
	store *configCallbacks
	name  string
	gauge bool
}

func (m *metric) update(f func(v int64) int64) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	if m.store.destroyed {
		panic(fmt.Sprintf("golang filter has been destroyed (metric %s)", m.name))
	}
	m.store.values[m.name] = f(m.store.values[m.name])
}

func (m *metric) Increment(offset int64) {
	if !m.gauge && offset <= 0 {
		return
	}
	m.update(func(v int64) int64 { return v + offset })
}

func (m *metric) Record(value uint64) {
	m.update(func(v int64) int64 {
		if m.gauge {
			return int64(value)
		}
		return v + int64(value)
	})
}

func (m *metric) Get() uint64 {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	return uint64(m.store.values[m.name])
}
