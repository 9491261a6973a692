package kafka

import (
	"context"
	"fmt"
)

// Ping reports whether a broker of the cluster answers a request (a
// metadata request naming no topic, over a live or a new connection)
// before ctx ends; the error names the cause a client would see, e.g.
// "broker unreachable".
func (k *Cluster) Ping(ctx context.Context) error {
	if err := k.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", k.cause(ctx, err))
	}
	return nil
}
