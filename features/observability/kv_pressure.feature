Feature: KV-cache pressure is exported
  KV-cache use is a metric (kv_cache_usage_ratio), per replica, as a fraction, and it shows
  the load a replica carries.

  @ORCH-3022
  Scenario: KV-cache use is exported for every engine and rises under load
    Given a replica set with at least 1 slot
    And all slots of the replica set are busy
    When I read the metrics exposition
    Then kv_cache_usage_ratio is exported for every engine, between 0 and 1
    And kv_cache_usage_ratio of the replica set's engine is above 0
