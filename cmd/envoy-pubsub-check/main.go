// Command envoy-pubsub-check checks Envoy bootstrap files that run the
// pub-sub plugin before a rollout, without an Envoy binary:
//
//	go run ./cmd/envoy-pubsub-check envoy.yaml deploy/kubernetes/envoy-configmap.yaml
//
// Each file may hold a bootstrap, several YAML documents, or Kubernetes
// ConfigMaps whose data holds bootstraps. Every bootstrap is validated
// against Envoy's API (also inside every Any), its plugin configurations go
// through the plugin's own parser, and the wiring between the plugin and
// Envoy is checked (kafka-scheme clusters, circuit breakers against
// session.max_sessions, idle timeouts against session.ping_interval, routes,
// secrets, where the filter runs). A filter whose config comes from extension
// config discovery (config_discovery with a path_config_source) is checked
// with the file of that base name beside the bootstrap, or the key of that
// name in the bootstrap's ConfigMap; one served by a management server is
// refused, as it cannot be checked offline. It prints one line per problem,
// "FILE[#WHERE]: PROBLEM", and exits with status 1 if there is any, 0
// (printing "FILE: ok") otherwise, and 2 on a usage error. Warnings
// ("FILE[#WHERE]: warning: ...", e.g. the filter running on routes that
// need no Go) are printed but do not fail the check.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/envoy-pubsub/gateway/internal/envoycheck"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run checks the files named in args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("envoy-pubsub-check", flag.ContinueOnError)
	flags.SetOutput(stderr)
	libraryPath := flags.String("library-path", envoycheck.LibraryPath, "where the golang filters must load the plugin's .so from")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: envoy-pubsub-check [-library-path PATH] FILE...")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return 2
	}
	opts := envoycheck.Options{LibraryPath: *libraryPath}
	status := 0
	for _, file := range flags.Args() {
		failed := false
		for _, p := range checkFile(file, opts) {
			fmt.Fprintln(stdout, oneLine(p.text))
			failed = failed || !p.warning
		}
		if failed {
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", file)
	}
	return status
}

// problem is one line of output.
type problem struct {
	text    string
	warning bool
}

// checkFile returns the problems of every bootstrap in file, each prefixed
// with the name of the bootstrap it was found in.
func checkFile(file string, opts envoycheck.Options) []problem {
	data, err := os.ReadFile(file)
	if err != nil {
		return []problem{{text: err.Error()}}
	}
	sources, err := envoycheck.Bootstraps(file, data)
	if err != nil {
		return []problem{{text: err.Error()}}
	}
	if len(sources) == 0 {
		return []problem{{text: file + ": no Envoy bootstrap (static_resources or dynamic_resources) found"}}
	}
	var out []problem
	for _, s := range sources {
		for _, p := range s.Problems(opts) {
			out = append(out, problem{text: s.Name + ": " + p.Error(), warning: envoycheck.IsWarning(p)})
		}
	}
	return out
}

// oneLine keeps a problem on one line of output.
func oneLine(problem string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(problem, "\n", "; ")), " ")
}
