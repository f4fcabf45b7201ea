Feature: Engine endpoints stay private
  The orchestrator exposes OrchQueue v1 only; the engines' OpenAI-compatible endpoints are not
  reachable through its public listener, even with a valid key.

  @OC-ADAPT-5002 @OC-ADAPT-5021
  Scenario Outline: OpenAI-style paths answer 404
    Given any replica set
    When I send <method> "<path>"
    Then the response status is 404

    Examples:
      | method | path                 |
      | POST   | /v1/completions      |
      | POST   | /v1/chat/completions |
      | POST   | /v1/embeddings       |
      | GET    | /v1/models           |
