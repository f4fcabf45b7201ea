@feature:catalog @needs:catalog_ca
Feature: Catalog and trust
  The catalog records each model's provenance: digest, source, tags, signatures, manifests and
  SBOM. Its trust policy refuses, with UNTRUSTED_ARTIFACT, an artifact without a verifying
  signature or from a registry it does not allow, at ingest and again at load time. Entries
  are made at run time and signed by signers the target's test CA issued (or deliberately
  not); each one a scenario registers is retired when the scenario ends.

  @ORCH-3060 @ORCH-3065
  Scenario: A signed model is recorded with its origin, signatures, manifests and SBOM
    Given a signed model entry from the allowed registry
    When I register the model entry
    Then the response status is 201
    And the entry records its digest, source, tags and verified signatures
    And the stored entry keeps its manifests and SBOM with their content

  @ORCH-3061 @ORCH-3067
  Scenario: The strict policy refuses an unsigned artifact
    Given an unsigned model entry from the allowed registry
    When I register the model entry
    Then the registration is refused with UNTRUSTED_ARTIFACT
    And the catalog has no entry with its id

  @ORCH-3061
  Scenario: A signature from a signer no trusted CA issued is refused
    Given a model entry signed by a signer that no trusted CA issued
    When I register the model entry
    Then the registration is refused with UNTRUSTED_ARTIFACT
    And the catalog has no entry with its id

  @ORCH-3061
  Scenario: A signature that does not match the digest is refused
    Given a signed model entry whose digest was changed after signing
    When I register the model entry
    Then the registration is refused with UNTRUSTED_ARTIFACT
    And the catalog has no entry with its id

  @ORCH-3063
  Scenario: The trust policy lists its registries and CA roots and refuses other registries
    Given a signed model entry from the allowed registry
    When I register the model entry
    Then it was registered
    And the entry's trust policy lists the allowed registry and a CA root
    Given a signed model entry from a registry the trust policy does not allow
    When I register the model entry
    Then the registration is refused with UNTRUSTED_ARTIFACT

  @ORCH-3066
  Scenario: The trust policy is strict and requires signatures and SBOMs
    Given a signed model entry from the allowed registry
    When I register the model entry
    Then it was registered
    And the entry's trust policy is strict and requires a signature and an SBOM
    Given a signed model entry without an SBOM
    When I register the model entry
    Then the registration is refused with UNTRUSTED_ARTIFACT

  @ORCH-3062 @ORCH-3068 @needs:identity
  Scenario: A tag resolves to the same recorded digest every time
    Given a registered Active model entry
    And a pool that alone serves its replica set
    When I roll the pool out to the entry's tag
    Then the pool serves the entry's digest within 10 seconds
    When I register another signed entry that binds the same tag to another digest
    Then the registration is refused as a conflict
    When I roll the pool out to the entry's tag
    Then the pool serves the entry's digest within 10 seconds

  @ORCH-3061 @needs:identity
  Scenario: An artifact that no longer verifies is refused at load time
    Given a signed model entry whose signer certificate expires in 2 seconds
    And it is registered
    And a pool that alone serves its replica set
    When I move the entry to Active
    And I wait until the signer certificate has expired
    And I roll the pool out to the entry's id
    Then the pool keeps its model and names UNTRUSTED_ARTIFACT in last_error within 10 s
