package pubsubpb

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// wireTable is PROTOCOL.md's core table: message -> field -> "number type".
var wireTable = map[string]map[string]string{
	"CmdEmpty":            {},
	"CmdPing":             {"state": "1 bytes"},
	"CmdKafkaFetch":       {"topic": "1 string", "partition": "2 int32", "offset": "3 int64"},
	"CmdKafkaListOffset":  {"topic": "1 string", "partition": "2 int32", "timestamp": "3 int64"},
	"PubSubReq":           {"sequence": "1 int64", "cmd_empty": "31 CmdEmpty", "cmd_ping": "32 CmdPing", "cmd_kafka_fetch": "33 CmdKafkaFetch", "cmd_kafka_list_offset": "34 CmdKafkaListOffset"},
	"ErrorResp":           {"code": "1 int32", "message": "2 string"},
	"PongResp":            {"state": "1 bytes"},
	"KafkaMessage":        {"offset": "1 int64", "timestamp": "2 int64", "key": "3 bytes", "value": "4 bytes"},
	"KafkaFetchResp":      {"messages": "1 repeated KafkaMessage"},
	"KafkaListOffsetResp": {"offset": "1 int64"},
	"PubSubResp":          {"sequence": "1 int64", "error_resp": "31 ErrorResp", "pong_resp": "32 PongResp", "kafka_fetch_resp": "33 KafkaFetchResp", "kafka_list_offset_resp": "34 KafkaListOffsetResp"},
}

// oneofs lists the commands and replies, which must sit in the oneofs.
var oneofs = map[string]string{"PubSubReq": "req", "PubSubResp": "resp"}

func describe(f protoreflect.FieldDescriptor) string {
	t := f.Kind().String()
	if f.Message() != nil {
		t = string(f.Message().FullName())
	}
	if f.IsList() {
		t = "repeated " + t
	}
	return t
}

func TestSchemaMatchesTheAPISIXWireTable(t *testing.T) {
	for msg, fields := range wireTable {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(msg))
		if err != nil {
			t.Errorf("message %s is not registered under its package-less name: %v", msg, err)
			continue
		}
		d := mt.Descriptor()
		for name, want := range fields {
			f := d.Fields().ByName(protoreflect.Name(name))
			if f == nil {
				t.Errorf("%s has no field %s", msg, name)
				continue
			}
			if got := fmt.Sprintf("%d %s", f.Number(), describe(f)); got != want {
				t.Errorf("%s.%s = %s, want %s", msg, name, got, want)
			}
			if o, ok := oneofs[msg]; ok && f.Number() >= 31 && (f.ContainingOneof() == nil || string(f.ContainingOneof().Name()) != o) {
				t.Errorf("%s.%s is not in oneof %s", msg, name, o)
			}
		}
		// Extensions may add fields, but only from number 100 up.
		for i := 0; i < d.Fields().Len(); i++ {
			f := d.Fields().Get(i)
			if _, core := fields[string(f.Name())]; !core && f.Number() < 100 {
				t.Errorf("%s.%s uses number %d; extensions start at 100", msg, f.Name(), f.Number())
			}
		}
	}
}

// TestGeneratedCodeIsUpToDate regenerates the Go code with generate.sh and
// compares it with the committed file. It needs protoc, so it runs where
// protoc is installed (generate.sh installs it) and is skipped elsewhere.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not installed; run proto/generate.sh to install it and check the generated code")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "generate.sh")
	cmd.Env = append(os.Environ(), "OUT_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}
	want, _ := os.ReadFile("pubsub.pb.go")
	got, err := os.ReadFile(filepath.Join(dir, "pubsub.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("pubsub.pb.go is not what generate.sh produces from pubsub.proto; run proto/generate.sh")
	}
}
