package rego

import (
	"bytes"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/portcullis/portcullis/policy"
)

// inputValue builds the AST value of in directly, field for field as policy.Input's JSON names them (a test keeps
// the two alike), rather than through a JSON round trip: a cold decision pays for this on every evaluation.
func inputValue(in *policy.Input) (ast.Value, error) {
	sigs := make([]*ast.Term, 0, len(in.Signatures))
	for _, s := range in.Signatures {
		sigs = append(sigs, ast.ObjectTerm(
			str("root", s.Root),
			ast.Item(ast.StringTerm("verified"), ast.BooleanTerm(s.Verified)),
			ast.Item(ast.StringTerm("identity"), identity(s.Identity)),
		))
	}
	atts := make([]*ast.Term, 0, len(in.Attestations))
	for i, a := range in.Attestations {
		pred, err := ast.ValueFromReader(bytes.NewReader(a.Predicate))
		if err != nil {
			return nil, fmt.Errorf("attestations[%d].predicate: %w", i, err)
		}
		atts = append(atts, ast.ObjectTerm(
			str("predicateType", a.PredicateType),
			ast.Item(ast.StringTerm("signedBy"), strArray(a.SignedBy)),
			ast.Item(ast.StringTerm("predicate"), ast.NewTerm(pred)),
		))
	}
	items := [][2]*ast.Term{
		ast.Item(ast.StringTerm("image"), ast.ObjectTerm(
			str("upstream", in.Image.Upstream),
			str("repository", in.Image.Repository),
			str("tag", in.Image.Tag),
			str("digest", in.Image.Digest),
			str("mediaType", in.Image.MediaType),
		)),
		ast.Item(ast.StringTerm("signatures"), ast.ArrayTerm(sigs...)),
		ast.Item(ast.StringTerm("attestations"), ast.ArrayTerm(atts...)),
		str("now", in.Now),
	}
	if s := in.Scan; s != nil {
		findings := make([]*ast.Term, 0, len(s.Findings))
		for _, f := range s.Findings {
			findings = append(findings, ast.ObjectTerm(
				str("id", f.ID),
				str("severity", string(f.Severity)),
				str("package", f.Package),
				str("version", f.Version),
				str("fixedVersion", f.FixedVersion),
				ast.Item(ast.StringTerm("waived"), ast.BooleanTerm(f.Waived)),
			))
		}
		items = append(items, ast.Item(ast.StringTerm("scan"), ast.ObjectTerm(
			str("source", string(s.Source)),
			str("scanner", s.Scanner),
			str("scannerVersion", s.ScannerVersion),
			str("scanTime", s.ScanTime),
			ast.Item(ast.StringTerm("counts"), ast.ObjectTerm(
				num("critical", s.Counts.Critical),
				num("high", s.Counts.High),
				num("medium", s.Counts.Medium),
				num("low", s.Counts.Low),
				num("unknown", s.Counts.Unknown),
			)),
			ast.Item(ast.StringTerm("findings"), ast.ArrayTerm(findings...)),
		)))
	}
	return ast.NewObject(items...), nil
}

func str(k, v string) [2]*ast.Term { return ast.Item(ast.StringTerm(k), ast.StringTerm(v)) }

func num(k string, v int) [2]*ast.Term { return ast.Item(ast.StringTerm(k), ast.IntNumberTerm(v)) }

func strArray(list []string) *ast.Term {
	ts := make([]*ast.Term, len(list))
	for i, s := range list {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

// identity is a policy.Identity with only its set fields, as its JSON has them (omitempty).
func identity(id policy.Identity) *ast.Term {
	var items [][2]*ast.Term
	for _, kv := range [][2]string{{"key", id.Key}, {"issuer", id.Issuer}, {"issuerRegExp", id.IssuerRegExp},
		{"subject", id.Subject}, {"subjectRegExp", id.SubjectRegExp}} {
		if kv[1] != "" {
			items = append(items, str(kv[0], kv[1]))
		}
	}
	return ast.ObjectTerm(items...)
}
