Feature: Replica sets and replica identity
  GET /v1/replicasets lists every replica set with its load, slots and service-level snapshot,
  and what each set runs (engine version, model digest) reaches clients.

  @ORCH-2104 @OC-CTRL-2004
  Scenario: Every replica set reports its load, slots and slo
    When I list the replica sets
    Then the response status is 200
    And every replica set reports its id, engine, load, slots and slo

  @ORCH-3032 @ORCH-3046 @OC-CORE-1031 @needs:identity
  Scenario: Each replica set pins one engine version and one model digest, visible to clients
    When I list the replica sets
    Then every replica set names one engine_version and one model_digest
    And the metrics exposition labels series with those engine versions
