"""Names and labels of rendered Kubernetes objects (cellplane.kubernetes.names): bounded, valid, collision-free,
including across projects whose long names differ only near the end."""

from __future__ import annotations

import re

import kubernetes_validate
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cellplane.kubernetes import KeyOpener, inventory, names, render
from kubestates import shop_deployments, shop_state

DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

# names as teams write them: long, alike, with the characters that need care (-, _, ., capitals, digits first)
STEM = "customer-relationship-management-platform-"
part = st.one_of(st.text("abz09-_.A", min_size=1, max_size=12),
                 st.builds(lambda tail: STEM + tail, st.text("abz09-", min_size=0, max_size=40)))
cell = st.tuples(part, part, part)


@settings(max_examples=150, deadline=None)
@given(st.lists(cell, min_size=2, max_size=12, unique=True))
def test_distinct_cells_get_distinct_valid_namespaces_of_at_most_63_characters(cells):
    spaces = [names.namespace(*c) for c in cells]
    assert len(set(spaces)) == len(cells)
    for space in spaces:
        assert len(space) <= 63 and DNS_1123.fullmatch(space), space


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(part, part, part), min_size=2, max_size=12, unique=True))
def test_distinct_endpoints_get_distinct_services_named_by_dns_1035_labels(endpoints):
    services = [names.service(*e) for e in endpoints]
    assert len(set(services)) == len(endpoints)
    for service in services:
        assert len(service) <= 63 and DNS_1035.fullmatch(service), service


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(part, part), min_size=2, max_size=12, unique=True))
def test_workload_names_stay_within_a_cronjobs_52_characters_and_apart(workloads):
    found = [names.workload(*w) for w in workloads]
    assert len(set(found)) == len(workloads)
    assert all(len(n) <= 52 and DNS_1123.fullmatch(n) for n in found)


@given(st.text(max_size=100))
def test_a_label_value_is_always_valid_and_kept_as_it_is_when_kubernetes_takes_it(value):
    label = names.label_value(value)
    assert len(label) <= 63 and LABEL_VALUE.fullmatch(label)
    if len(value) <= 63 and LABEL_VALUE.fullmatch(value):
        assert label == value


def test_parts_that_join_alike_get_different_names():
    assert names.namespace("a-b", "c", "d") != names.namespace("a", "b-c", "d")
    assert names.namespace("a--b", "c", "d") != names.namespace("a", "b", "c--d")
    assert names.namespace("Shop", "x", "y") != names.namespace("shop", "x", "y")
    assert names.namespace("acme", "shop", "dev") == "acme--shop--dev"  # readable when it can be
    long = names.namespace("acme", STEM + "eu-west-1", "production")
    assert long.startswith("acme--customer-relationship") and len(long) <= 63 and "---" in long
    assert names.service("3d", "v1", "http").startswith("s-3d")


def test_two_projects_with_long_similar_names_render_apart_and_valid():
    key = X25519PrivateKey.generate()
    organization = "acme-corporation-international-holdings"
    state = shop_state(key, organization=organization, project=STEM + "eu-west-1", environment="production-eu")
    other = shop_deployments(key, organization=organization, project=STEM + "eu-west-2", environment="production-eu")
    state = state.model_copy(update={"deployments": [*state.deployments, *other]})
    rendering = render(state, KeyOpener(key))
    assert rendering.blocked == {}
    assert len(inventory(rendering.objects)) == len(rendering.objects)
    assert len({o["metadata"]["namespace"] for o in rendering.objects if o["kind"] == "Deployment"}) == 2
    for obj in rendering.objects:
        assert len(obj["metadata"]["name"]) <= 63
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
        if obj["kind"] not in ("Gateway", "HTTPRoute"):
            kubernetes_validate.validate(obj, "1.37", strict=True)
