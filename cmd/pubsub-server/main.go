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
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
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
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

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
	site.Clusters = doc.ClusterNames()

	pool := kafka.NewPool(kafka.Logger(log))
	defer pool.Close()
	resolver, err := standalone.NewResolver(doc, pool)
	if err != nil {
		return err
	}
	srv := server.New(resolver, server.OptionsFrom(doc, log))
	handler, err := web.Handler(site, srv)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for _, name := range doc.ClusterNames() {
		log.Info("serving", "cluster", name, "url", fmt.Sprintf("ws://%s/%s", ln.Addr(), name))
	}
	log.Info("live page", "url", fmt.Sprintf("http://%s/", ln.Addr()))
	if *configFile == "" {
		log.Info(fmt.Sprintf("try it: go run ./cmd/pubsub-client -url ws://%s/kafka -topic %s", ln.Addr(), standalone.DemoTopic))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Sessions first (each gets 1001), then the page's connections.
	return errors.Join(srv.Shutdown(sctx), hs.Shutdown(sctx))
}
