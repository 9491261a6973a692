package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// unknownBrokerError is what franz-go returns for a request to a broker it
// does not know (one that left the cluster): its own error, unexported.
func unknownBrokerError(t *testing.T) error {
	t.Helper()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cl.Broker(99).Request(ctx, kmsg.NewPtrMetadataRequest())
	if err == nil || err.Error() != "unknown broker" {
		t.Fatalf("a request to an unknown broker failed with %v", err)
	}
	return err
}

// TestEveryFranzGoClientErrorHasAProtocolCause: each client-side error of
// franz-go the gateway can pass on is named by a cause PROTOCOL.md lists,
// never by franz-go's own words.
func TestEveryFranzGoClientErrorHasAProtocolCause(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	k := &Cluster{}
	live := context.Background()
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	deadline, stop := context.WithDeadline(context.Background(), time.Now())
	defer stop()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"unknown broker", live, unknownBrokerError(t), "broker unreachable"},
		{"dial refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "broker unreachable"},
		{"connection died", live, errors.New("the broker connection has died and the request will be retried on a new connection"), "broker unreachable"},
		{"correlation mismatch", live, errors.New("correlation ID mismatch"), "broker unreachable"},
		{"closed connection", live, net.ErrClosed, "broker unreachable"},
		{"connection reset", live, syscall.ECONNRESET, "broker unreachable: connection closed by broker"},
		{"first read EOF, no SASL", live, &kgo.ErrFirstReadEOF{}, "authentication failed: broker requires SASL"},
		{"retries exhausted", live, kgo.ErrRecordRetries, "broker unreachable"},
		{"record timeout", live, kgo.ErrRecordTimeout, "request timed out"},
		{"max buffered", live, kgo.ErrMaxBuffered, "request timed out"},
		{"deadline of the command", deadline, context.DeadlineExceeded, "request timed out"},
		{"deadline of a dial", live, context.DeadlineExceeded, "broker unreachable"},
		{"aborting", live, kgo.ErrAborting, "canceled"},
		{"client closed", live, kgo.ErrClientClosed, "canceled"},
		{"canceled", expired, context.Canceled, "canceled"},
		{"max decompress", live, kgo.ErrMaxDecompress, "record batch too large"},
		{"decompress too large", live, &kgo.ErrDecompressTooLarge{Topic: "t", Offset: 3, NextOffset: 9}, "record batch too large"},
		{"response too large", live, errors.New("response exceeds BrokerMaxReadBytes"), "record batch too large"},
		{"broker too old", live, errors.New("broker is too old; the broker has already indicated it will not know how to handle the request"), "UNSUPPORTED_VERSION"},
		{"request key unknown", live, errors.New("request key is unknown"), "UNSUPPORTED_VERSION"},
		{"data loss", live, &kgo.ErrDataLoss{Topic: "t", ConsumedTo: 9, ResetTo: 4}, "OFFSET_OUT_OF_RANGE"},
		{"group session", live, &kgo.ErrGroupSession{Err: kerr.RebalanceInProgress}, "REBALANCE_IN_PROGRESS"},
		{"wrapped Kafka error", live, fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.NotLeaderForPartition), "NOT_LEADER_FOR_PARTITION"},
		{"SASL failure", live, kerr.SaslAuthenticationFailed, "authentication failed"},
	} {
		got := k.cause(tc.ctx, tc.err)
		if got.Error() != tc.want {
			t.Errorf("%s (%v): cause %q, want %q", tc.name, tc.err, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the cause does not keep the original error", tc.name)
		}
		// A cause may say more after a colon ("broker unreachable:
		// connection closed by broker"); PROTOCOL.md lists what precedes it.
		listed, _, _ := strings.Cut(tc.want, ":")
		if !strings.Contains(string(doc), "`"+listed+"`") && !isKafkaName(tc.want) {
			t.Errorf("%s: PROTOCOL.md does not list the cause %q", tc.name, tc.want)
		}
	}
}

// isKafkaName reports whether cause is a Kafka error name.
func isKafkaName(cause string) bool {
	for code := int16(-1); code < 200; code++ {
		if e := kerr.ErrorForCode(code); e != nil && e.Error() != "" {
			var ke *kerr.Error
			if errors.As(e, &ke) && ke.Message == cause {
				return true
			}
		}
	}
	return false
}

// TestABatchFranzGoCannotParseIsCorrupt: decoding errors franz-go reports
// untyped (a CRC mismatch) are named CORRUPT_MESSAGE; typed ones keep
// their cause.
func TestABatchFranzGoCannotParseIsCorrupt(t *testing.T) {
	k := &Cluster{}
	ctx := context.Background()
	crc := fmt.Errorf("encoded crc %x does not match calculated crc %x", 1, 2)
	if got := k.fetchCause(ctx, crc); got.Error() != "CORRUPT_MESSAGE" || !errors.Is(got, crc) {
		t.Fatalf("a CRC mismatch: %v", got)
	}
	if got := k.fetchCause(ctx, kgo.ErrMaxDecompress); !errors.Is(got, ErrBatchTooLarge) {
		t.Fatalf("a batch over the bound: %v", got)
	}
}

// TestEveryCauseOfTheGatewayIsInTheProtocol: each cause the gateway gives
// itself, before or instead of Kafka's answer, is listed in PROTOCOL.md
// word for word.
func TestEveryCauseOfTheGatewayIsInTheProtocol(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cause := range []error{
		ErrTopicNotAllowed, ErrGroupNotAllowed, ErrTopicNotFound, ErrPartitionNotFound,
		ErrBrokerUnreachable, ErrAuthentication, ErrTimeout, ErrBatchTooLarge, ErrCanceled,
		ErrTLSRequired, ErrNoRecords, ErrInvalidPartition, ErrTooManySubscriptions,
		ErrDuplicateSubscription, ErrUnknownSubscription, ErrGroupAssigns, ErrAlreadyMember,
		ErrTooManyGroups, errMemberClientFailed,
	} {
		if !strings.Contains(string(doc), "`"+cause.Error()+"`") {
			t.Errorf("PROTOCOL.md does not list the cause %q", cause)
		}
	}
	// tooManyRecords names its numbers; PROTOCOL.md writes N and M.
	want := tooManyRecords(1001, 1000).Error()
	want = strings.Replace(strings.Replace(want, "1001", "N", 1), "1000", "M", 1)
	if !strings.Contains(string(doc), "`"+want+"`") {
		t.Errorf("PROTOCOL.md does not list the cause %q", want)
	}
}
