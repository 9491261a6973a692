// Command pubsub-server serves the pub-sub protocol over WebSocket without
// Envoy: cluster NAME of the configuration is at ws://HOST:PORT/NAME, and a
// live page that shows a topic's records is at http://HOST:PORT/. With no
// -config it starts an embedded in-memory Kafka with a demo topic, for
// development only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/ratelog"
	"github.com/envoy-pubsub/gateway/standalone"
	"github.com/envoy-pubsub/gateway/web"
)

func main() {
	if err := run(); err != nil {
		slog.Error("pubsub-server: " + err.Error())
		os.Exit(1)
	}
}

func run() error {
	configFile := flag.String("config", "", "configuration file (YAML or JSON); empty starts an embedded development Kafka")
	listen := flag.String("listen", "127.0.0.1:9080", "HOST:PORT to serve WebSocket sessions on")
	metricsListen := flag.String("metrics-listen", "127.0.0.1:9090", "HOST:PORT to serve /metrics, /healthz and /readyz on (apart from -listen); empty disables them")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	// A warning that repeats (a broker down, a client that keeps failing)
	// is logged once per interval, with the count held back.
	log := slog.New(ratelog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}), ratelog.DefaultInterval))
	slog.SetDefault(log)

	// Signals are taken before the server starts and says where it
	// serves, so that a SIGTERM right after that line still drains.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var doc *config.Document
	site := web.Site{}
	if *configFile != "" {
		d, err := config.Load(*configFile)
		if err != nil {
			return err
		}
		doc = d
	} else {
		dev, err := standalone.StartDevKafka(log)
		if err != nil {
			return err
		}
		defer dev.Close()
		log.Warn("DEVELOPMENT MODE: no -config given, serving an embedded in-memory Kafka; not for production",
			"brokers", dev.Brokers(), "topic", standalone.DemoTopic)
		d, err := standalone.DevConfig(dev)
		if err != nil {
			return err
		}
		doc = d
		site.Topic = standalone.DemoTopic
	}
	site.Clusters, site.Topics = doc.ClusterNames(), web.SiteOf(doc).Topics

	srv, err := standalone.Start(doc, *listen, standalone.Options{
		Logger:        log,
		Front:         func(pubsub http.Handler) (http.Handler, error) { return web.Handler(site, pubsub) },
		MetricsListen: *metricsListen,
		// The default address may be taken by another server on the same
		// host; one given on the command line must be served.
		MetricsOptional: !flagGiven("metrics-listen"),
	})
	if err != nil {
		return err
	}
	for _, name := range doc.ClusterNames() {
		log.Info("serving", "cluster", name, "url", srv.URL(name))
	}
	log.Info("live page", "url", fmt.Sprintf("http://%s/", srv.Addr()))
	if a := srv.MetricsAddr(); a != "" {
		log.Info("metrics and health", "metrics", "http://"+a+"/metrics", "healthz", "http://"+a+"/healthz", "readyz", "http://"+a+"/readyz")
	}
	if *configFile == "" {
		log.Info(fmt.Sprintf("try it: go run ./cmd/pubsub-client -url %s -topic %s", srv.URL("kafka"), standalone.DemoTopic))
	}

	var served error
	select {
	case served = <-srv.Failed():
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(served, srv.Shutdown(sctx))
}

// flagGiven reports whether the command line set the flag name.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// shutdownTimeout bounds how long the server waits for its sessions to take
// their 1001 close frame and end.
const shutdownTimeout = 10 * time.Second
