package hygiene

import (
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/envoy-pubsub/gateway/config"
)

// k8sObject is the part of a Kubernetes object the test reads.
type k8sObject struct {
	Kind string            `json:"kind"`
	Data map[string]string `json:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Args           []string `json:"args"`
					Ports          []port   `json:"ports"`
					LivenessProbe  *probe   `json:"livenessProbe"`
					ReadinessProbe *probe   `json:"readinessProbe"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type port struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type probe struct {
	HTTPGet struct {
		Path string `json:"path"`
		Port string `json:"port"`
	} `json:"httpGet"`
}

func TestStandaloneKubernetesExampleProbesHealthOnTheMetricsPort(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/standalone/pubsub-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var configMap, deployment *k8sObject
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		switch o.Kind {
		case "ConfigMap":
			configMap = &o
		case "Deployment":
			deployment = &o
		}
	}
	if configMap == nil || deployment == nil {
		t.Fatal("the example lacks its ConfigMap or Deployment")
	}
	if _, err := config.Parse([]byte(configMap.Data["pubsub.yaml"])); err != nil {
		t.Fatalf("the example's configuration: %v", err)
	}
	c := deployment.Spec.Template.Spec.Containers[0]
	at := slices.Index(c.Args, "-metrics-listen")
	if at < 0 || !strings.HasSuffix(c.Args[at+1], ":9090") {
		t.Fatalf("args %v do not put the metrics listener on 9090", c.Args)
	}
	if !slices.Contains(c.Ports, port{Name: "metrics", ContainerPort: 9090}) {
		t.Fatalf("no port named metrics on 9090: %v", c.Ports)
	}
	for p, want := range map[*probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if p == nil || p.HTTPGet.Path != want || p.HTTPGet.Port != "metrics" {
			t.Errorf("probe %+v, want GET %s on the metrics port", p, want)
		}
	}
}
