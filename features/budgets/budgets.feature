@feature:budgets @needs:tenant_key
Feature: Per-session budgets
  When sessions have token, time or cost budgets, admission refuses a task that does not fit
  what is left, and clients see what is left in the budget headers, in SSE metrics events, or
  both. Budgets are judged with the second tenant's key, whose sessions must have a budget.

  @ORCH-3099 @OC-CORE-1024 @OC-CTRL-2068 @OC-METRICS-7111
  Scenario: The remaining budget is reported and goes down as a session works
    Given a task of the second tenant with prompt "[[sim tokens=8]] budget"
    When I submit it with the second tenant's key
    Then the response status is 202
    When I read its stream with the second tenant's key
    And I read its session with the second tenant's key
    Then the remaining budget was reported in budget headers or SSE metrics events
    And a second task in the session lowers the reported token budget

  @OC-CORE-1023 @ORCH-3099 @OC-CTRL-2068
  Scenario: A task that does not fit the session's remaining budget is refused
    Given a task of the second tenant with prompt "[[sim tokens=4]] budget"
    When I submit it with the second tenant's key
    And I read its stream with the second tenant's key
    And I read its session with the second tenant's key
    And I submit a task in its session asking for one token more than the remaining budget
    Then the response status is 400
    And the error code is ADMISSION_REJECT
    And the refusal is not retriable
    And a task in its session that fits the remaining budget is admitted
