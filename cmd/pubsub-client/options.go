package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// options are the parsed command line.
type options struct {
	url     string
	topic   string
	produce bool

	// partition is -p; partitionSet tells whether it was given (reading
	// without it reads every partition, producing without it lets Kafka's
	// partitioner place each record by its key).
	partition    int32
	partitionSet bool

	start  startSpec
	toEnd  bool // -e, or -follow=false
	count  int  // -c; 0 reads on
	format string
	json   bool
	group  string
	filter *pb.KafkaFilter // nil: no client filter

	keySep  string
	headers []*pb.KafkaHeader // -H, on every produced record
	batch   int

	upgradeHeader string // -header NAME:VALUE
	token         string
	tokenFile     string
	caFile        string
	certFile      string
	keyFile       string
	insecure      bool
	pingInterval  time.Duration
}

// startKind says how a startSpec picks the first offset of a partition.
type startKind int

const (
	startEarliest  startKind = iota // the first record of the log
	startLatest                     // the next record written
	startOffset                     // value is an absolute offset
	startRelative                   // value records before the end of each partition
	startTimestamp                  // value is a timestamp in ms
)

// startSpec is where reading starts (-o, -from).
type startSpec struct {
	kind  startKind
	value int64
}

// parseStart reads kcat's -o values (beginning, end, N, -N, s@MS) and the
// older -from values (earliest, latest, N, @MS).
func parseStart(s string) (startSpec, error) {
	switch {
	case s == "beginning" || s == "earliest":
		return startSpec{kind: startEarliest}, nil
	case s == "end" || s == "latest":
		return startSpec{kind: startLatest}, nil
	case strings.HasPrefix(s, "s@") || strings.HasPrefix(s, "@"):
		ms, err := strconv.ParseInt(s[strings.IndexByte(s, '@')+1:], 10, 64)
		if err != nil || ms < 0 {
			return startSpec{}, fmt.Errorf("%q: a timestamp is s@MILLISECONDS", s)
		}
		return startSpec{kind: startTimestamp, value: ms}, nil
	case strings.HasPrefix(s, "-"):
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil || n <= 0 {
			return startSpec{}, fmt.Errorf("%q: a relative offset is -N with N > 0", s)
		}
		return startSpec{kind: startRelative, value: n}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return startSpec{}, fmt.Errorf("%q: want beginning, end, an offset N, -N or s@MILLISECONDS", s)
	}
	return startSpec{kind: startOffset, value: n}, nil
}

// readOnlyFlags and produceOnlyFlags are refused in the other mode, so a
// misplaced flag is an error rather than silently ignored.
var (
	readOnlyFlags    = []string{"o", "from", "e", "follow", "c", "f", "J", "G", "filter-key", "filter-header"}
	produceOnlyFlags = []string{"K", "key-separator", "H", "batch"}
)

// errUsage is a command line that parseArgs refused; the flag set already
// printed why.
var errUsage = errors.New("usage")

// parseArgs parses the command line; usage and errors go to stderr. It
// returns flag.ErrHelp for -h.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{start: startSpec{kind: startEarliest}}
	fs := flag.NewFlagSet("pubsub-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pubsub-client [-C | -P] -url ws://HOST:PORT/CLUSTER -t TOPIC [flags]\n\n")
		fs.PrintDefaults()
	}

	fs.StringVar(&o.url, "url", "ws://127.0.0.1:9080/kafka", "pub-sub endpoint (ws:// or wss://)")
	fs.StringVar(&o.topic, "topic", "demo", "topic to read or write")
	fs.StringVar(&o.topic, "t", "demo", "topic (alias of -topic)")
	fs.Bool("C", true, "read (the default mode)")
	fs.BoolVar(&o.produce, "produce", false, "write the lines of standard input to the topic instead of reading it")
	fs.BoolVar(&o.produce, "P", false, "produce (alias of -produce)")
	partition := func(s string) error {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < -1 {
			return fmt.Errorf("%q: want a partition number", s)
		}
		o.partition, o.partitionSet = int32(n), true
		return nil
	}
	fs.Func("partition", "the one partition to read or write (default: read every partition; produce: -1, by key)", partition)
	fs.Func("p", "partition (alias of -partition)", partition)

	start := func(s string) (err error) {
		o.start, err = parseStart(s)
		return err
	}
	fs.Func("o", "start: beginning, end, an offset N, -N (N records before the end of each partition), s@MILLISECONDS (default beginning)", start)
	fs.Func("from", "start: earliest, latest, an offset, or a timestamp in ms prefixed with @ (default earliest)", start)
	fs.BoolVar(&o.toEnd, "e", false, "exit once every partition read has reached the end of its log as it was when reading it began")
	follow := fs.Bool("follow", true, "keep reading new records at the end of the log (false: as -e)")
	fs.IntVar(&o.count, "c", 0, "exit after this many records (0: no limit)")
	fs.StringVar(&o.format, "f", "", `output format: %t topic, %p partition, %o offset, %k key, %s value, %h headers (name=value,...), %T timestamp (ms), %S value size, %K key size, %% a percent sign, \n \t \r \\ (default "partition=P offset=O timestamp=RFC3339 key="K" value="V"")`)
	fs.BoolVar(&o.json, "J", false, "print one JSON object per record (kcat's fields)")
	fs.StringVar(&o.group, "G", "", "read as a member of this consumer group, committing what was printed every second and at exit")
	filterKey := fs.String("filter-key", "", "read only records with this key")
	fs.Func("filter-header", "read only records with this header, NAME=VALUE (repeatable: all must match)", func(s string) error {
		h, err := parseHeader(s)
		if err == nil {
			filterOf(o).Headers = append(filterOf(o).Headers, h)
		}
		return err
	})

	fs.StringVar(&o.keySep, "key-separator", "", "produce: split each line at the first separator into key and value")
	fs.StringVar(&o.keySep, "K", "", "produce: key delimiter (alias of -key-separator)")
	fs.Func("H", "produce: add header NAME=VALUE to every record (repeatable)", func(s string) error {
		h, err := parseHeader(s)
		if err == nil {
			o.headers = append(o.headers, h)
		}
		return err
	})
	fs.IntVar(&o.batch, "batch", 100, "produce: most records per request")

	fs.StringVar(&o.upgradeHeader, "header", "", "extra upgrade header, NAME:VALUE")
	fs.StringVar(&o.token, "token", "", "bearer token sent at the upgrade (Authorization: Bearer TOKEN)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token")
	fs.StringVar(&o.caFile, "cafile", "", "wss://: PEM file of the certificate authorities to trust (default: the system's)")
	fs.StringVar(&o.certFile, "cert", "", "wss://: client certificate (PEM) for mutual TLS, with -key")
	fs.StringVar(&o.keyFile, "key", "", "wss://: private key (PEM) of -cert")
	fs.BoolVar(&o.insecure, "insecure", false, "wss://: do not verify the server's certificate (prints a warning)")
	fs.DurationVar(&o.pingInterval, "ping-interval", 30*time.Second, "send a WebSocket ping this often and give up on a server that does not answer within as long; 0 sends none")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	fail := func(format string, a ...any) (*options, error) {
		fmt.Fprintf(stderr, format+"\n", a...)
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["C"] && o.produce {
		return fail("-C and -P are two modes: give one")
	}
	mode, others := "producing (-P)", readOnlyFlags
	if !o.produce {
		mode, others = "reading (-C)", produceOnlyFlags
	}
	for _, name := range others {
		if set[name] {
			return fail("-%s does not apply when %s", name, mode)
		}
	}
	if set["filter-key"] {
		filterOf(o).Key = []byte(*filterKey)
	}
	if !*follow {
		o.toEnd = true
	}
	switch {
	case o.topic == "":
		return fail("-t: give a topic")
	case o.count < 0:
		return fail("-c: want a count >= 0")
	case o.batch <= 0:
		return fail("-batch must be positive")
	case o.format != "" && o.json:
		return fail("-f and -J are two output formats: give one")
	case o.group != "" && o.partitionSet:
		return fail("-p does not apply with -G: the group assigns the partitions")
	case o.group != "" && o.start.kind == startRelative:
		return fail("-o -N does not apply with -G: the group's committed offsets decide where reading starts")
	case !o.produce && o.partitionSet && o.partition < 0:
		return fail("-p: want a partition >= 0 when reading")
	case o.token != "" && o.tokenFile != "":
		return fail("-token and -token-file: give one")
	case (o.certFile == "") != (o.keyFile == ""):
		return fail("-cert and -key go together")
	}
	if tlsFlag := firstSet(set, "cafile", "cert", "key", "insecure"); tlsFlag != "" && !strings.HasPrefix(o.url, "wss://") {
		return fail("-%s applies to wss:// URLs only", tlsFlag)
	}
	if o.format != "" {
		if _, err := compileFormat(o.format); err != nil {
			return fail("-f: %v", err)
		}
	}
	return o, nil
}

// filterOf returns o's client filter, creating it.
func filterOf(o *options) *pb.KafkaFilter {
	if o.filter == nil {
		o.filter = &pb.KafkaFilter{}
	}
	return o.filter
}

// parseHeader reads NAME=VALUE.
func parseHeader(s string) (*pb.KafkaHeader, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("%q: want NAME=VALUE", s)
	}
	return &pb.KafkaHeader{Key: name, Value: []byte(value)}, nil
}

// firstSet returns the first of names that set holds, or "".
func firstSet(set map[string]bool, names ...string) string {
	for _, n := range names {
		if set[n] {
			return n
		}
	}
	return ""
}
