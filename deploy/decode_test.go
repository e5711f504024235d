package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// object is one rendered document, decoded strictly.
type object struct {
	kind, name string
	typed      any
}

// Custom resources the chart renders, with the fields of their CRDs that the chart uses (prometheus-operator
// monitoring.coreos.com/v1, cert-manager.io/v1): a field the CRD does not have fails decoding like a built-in.
type (
	relabel struct {
		SourceLabels []string `json:"sourceLabels,omitempty"`
		TargetLabel  string   `json:"targetLabel,omitempty"`
	}
	endpoint struct {
		Port        string    `json:"port"`
		Path        string    `json:"path,omitempty"`
		Interval    string    `json:"interval,omitempty"`
		Relabelings []relabel `json:"relabelings,omitempty"`
	}
	serviceMonitor struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Selector  metav1.LabelSelector `json:"selector"`
			Endpoints []endpoint           `json:"endpoints"`
		} `json:"spec"`
	}
	podMonitor struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Selector            metav1.LabelSelector `json:"selector"`
			PodMetricsEndpoints []endpoint           `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	prometheusRule struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					For         string            `json:"for,omitempty"`
					Labels      map[string]string `json:"labels,omitempty"`
					Annotations map[string]string `json:"annotations,omitempty"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	certificate struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SecretName  string `json:"secretName"`
			Duration    string `json:"duration,omitempty"`
			RenewBefore string `json:"renewBefore,omitempty"`
			PrivateKey  struct {
				Algorithm      string `json:"algorithm,omitempty"`
				Size           int    `json:"size,omitempty"`
				RotationPolicy string `json:"rotationPolicy,omitempty"`
			} `json:"privateKey"`
			Usages      []string `json:"usages,omitempty"`
			DNSNames    []string `json:"dnsNames,omitempty"`
			IPAddresses []string `json:"ipAddresses,omitempty"`
			IssuerRef   struct {
				Name  string `json:"name"`
				Kind  string `json:"kind,omitempty"`
				Group string `json:"group,omitempty"`
			} `json:"issuerRef"`
		} `json:"spec"`
	}
)

// newTyped returns a pointer to the Go type of apiVersion/kind.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, true
	case "batch/v1/Job":
		return &batchv1.Job{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, true
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &serviceMonitor{}, true
	case "monitoring.coreos.com/v1/PodMonitor":
		return &podMonitor{}, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}, true
	case "cert-manager.io/v1/Certificate":
		return &certificate{}, true
	}
	return nil, false
}

// decodeAll splits helm's output into documents and decodes each strictly: duplicate keys, unknown fields and
// kinds the test does not know are errors.
func decodeAll(rendered string) ([]object, error) {
	var out []object
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(rendered, -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, doc)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &meta); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		typed, ok := newTyped(meta.APIVersion, meta.Kind)
		if !ok {
			return nil, fmt.Errorf("document %d: %s %s: no Go type in this test for it", i, meta.APIVersion, meta.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(typed); err != nil {
			return nil, fmt.Errorf("%s %s: %w", meta.Kind, meta.Metadata.Name, err)
		}
		out = append(out, object{kind: meta.Kind, name: meta.Metadata.Name, typed: typed})
	}
	return out, nil
}
