package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// event is a realistic Kafka value: an e-commerce or telemetry event as
// services emit them, a few hundred bytes of JSON with identifiers,
// timestamps, enumerations, nested objects, numbers and free text. Such
// values compress three to six times under the codecs producers use.
type event struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Source    string            `json:"source"`
	Time      time.Time         `json:"time"`
	Sequence  uint64            `json:"sequence"`
	User      eventUser         `json:"user"`
	Device    eventDevice       `json:"device"`
	Order     *eventOrder       `json:"order,omitempty"`
	Message   string            `json:"message"`
	Labels    map[string]string `json:"labels,omitempty"`
	Sampled   bool              `json:"sampled"`
	LatencyMS float64           `json:"latency_ms"`
}

type eventUser struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Plan    string `json:"plan"`
}

type eventDevice struct {
	OS         string `json:"os"`
	AppVersion string `json:"app_version"`
	IP         string `json:"ip"`
}

type eventOrder struct {
	ID       string      `json:"id"`
	Currency string      `json:"currency"`
	Total    float64     `json:"total"`
	Items    []eventItem `json:"items"`
}

type eventItem struct {
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Price    float64 `json:"price"`
}

// Vocabularies of the generated events.
var (
	eventTypes = []string{"page_view", "add_to_cart", "checkout_started", "order_placed", "payment_failed", "search", "login", "logout"}
	sources    = []string{"web-frontend", "ios-app", "android-app", "checkout-service", "search-service"}
	countries  = []string{"DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "ES", "CA"}
	plans      = []string{"free", "plus", "business", "enterprise"}
	systems    = []string{"iOS 18.2", "Android 15", "Windows 11", "macOS 15.3", "Linux"}
	currencies = []string{"EUR", "USD", "GBP", "JPY"}
	words      = strings.Fields(`the customer opened product page from search results and added
		item to cart after comparing prices shipping was free for members payment declined by
		issuer retry succeeded with another card session resumed on mobile device recommended
		bundle accepted discount code applied delivery estimate shown warehouse stock low`)
)

// eventSource generates events deterministically from a seed, so that every
// run produces the same values.
type eventSource struct {
	rng   *rand.Rand
	seq   uint64
	start time.Time
}

func newEventSource(seed uint64) *eventSource {
	return &eventSource{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
}

// next returns the JSON encoding of the next event.
func (s *eventSource) next() []byte {
	r := s.rng
	s.seq++
	e := event{
		ID:        s.hex(32),
		Type:      pick(r, eventTypes),
		Source:    pick(r, sources),
		Time:      s.start.Add(time.Duration(s.seq)*time.Millisecond + time.Duration(r.IntN(1000))*time.Microsecond),
		Sequence:  s.seq,
		User:      eventUser{ID: fmt.Sprintf("u-%07d", r.IntN(5_000_000)), Country: pick(r, countries), Plan: pick(r, plans)},
		Device:    eventDevice{OS: pick(r, systems), AppVersion: fmt.Sprintf("%d.%d.%d", 4+r.IntN(3), r.IntN(20), r.IntN(50)), IP: fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256))},
		Message:   s.sentence(4 + r.IntN(10)),
		Sampled:   r.IntN(10) == 0,
		LatencyMS: float64(r.IntN(250_000)) / 1000,
	}
	if e.Type == "order_placed" || e.Type == "checkout_started" || e.Type == "payment_failed" {
		o := &eventOrder{ID: "o-" + s.hex(12), Currency: pick(r, currencies)}
		for range 1 + r.IntN(4) {
			it := eventItem{SKU: fmt.Sprintf("SKU-%05d", r.IntN(40_000)), Quantity: 1 + r.IntN(3), Price: float64(r.IntN(20_000)) / 100}
			o.Total += float64(it.Quantity) * it.Price
			o.Items = append(o.Items, it)
		}
		e.Order = o
	}
	if r.IntN(3) == 0 {
		e.Labels = map[string]string{"region": "eu-west-" + fmt.Sprint(1+r.IntN(3)), "experiment": pick(r, []string{"control", "variant-a", "variant-b"})}
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(err) // the types above always encode
	}
	return b
}

// Sizes of the two kinds of events, about (Config.EventBytes).
const (
	SmallEventBytes = 100
	LargeEventBytes = 450
)

// compactEvent is a small event (about SmallEventBytes of JSON): the kind
// of value a telemetry or click stream carries, where the cost per record,
// not per byte, decides the rate.
type compactEvent struct {
	ID      string  `json:"id"`
	Type    string  `json:"type"`
	User    string  `json:"user"`
	Time    int64   `json:"ts"`
	Country string  `json:"country"`
	Latency float64 `json:"ms"`
}

// nextCompact returns the JSON encoding of the next compact event.
func (s *eventSource) nextCompact() []byte {
	r := s.rng
	s.seq++
	b, err := json.Marshal(compactEvent{
		ID:      s.hex(12),
		Type:    pick(r, eventTypes),
		User:    fmt.Sprintf("u-%07d", r.IntN(5_000_000)),
		Time:    s.start.Add(time.Duration(s.seq) * time.Millisecond).UnixMilli(),
		Country: pick(r, countries),
		Latency: float64(r.IntN(250_000)) / 1000,
	})
	if err != nil {
		panic(err) // the type above always encodes
	}
	return b
}

// hex returns n random lower-case hexadecimal digits.
func (s *eventSource) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[s.rng.IntN(16)]
	}
	return string(b)
}

// sentence returns n words of free text.
func (s *eventSource) sentence(n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = pick(s.rng, words)
	}
	return strings.Join(ws, " ")
}

func pick(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }
