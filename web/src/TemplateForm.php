<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * A template run's form: the selector, the template's parameters (posted as p[<name>], passed on as text: the broker
 * types and checks them against the template's spec and names the one that does not fit) and the pacing options.
 * The web only checks what it must to build the admin API's body; empty parameters are left to their defaults.
 */
final class TemplateForm
{
    /** field => [low, high] for the pacing options (the admin API's ranges) */
    public const PACING = ['max_parallel' => [1, 1000], 'canary' => [0, 1000], 'halt_failure_pct' => [0, 100]];
    public const DEFAULTS = ['selector' => '', 'max_parallel' => '20', 'canary' => '0', 'halt_failure_pct' => ''];
    private const PARAM = '/^[A-Za-z_][A-Za-z0-9_]{0,31}$/';
    private const MAX_VALUE = 4000;

    /** @param array<string, string> $values what the form shows again (the posted text) */
    private function __construct(public readonly array $values, public readonly string $problem)
    {
    }

    public static function fromPost(array $post): self
    {
        $fields = ['selector' => $post['selector'] ?? '', 'max_parallel' => $post['max_parallel'] ?? self::DEFAULTS['max_parallel'],
            'canary' => $post['canary'] ?? self::DEFAULTS['canary'], 'halt_failure_pct' => $post['halt_failure_pct'] ?? ''];
        $params = is_array($post['p'] ?? null) ? $post['p'] : [];
        foreach ($params as $name => $value) {
            $fields['p_' . $name] = preg_match(self::PARAM, (string) $name) ? $value : null;
        }
        $values = [];
        $problem = '';
        foreach ($fields as $key => $value) {
            if (!is_string($value) || strlen($value) > self::MAX_VALUE) {
                $problem = 'Each field is text of at most ' . self::MAX_VALUE . ' characters (parameters: letters, digits, _); nothing was run.';
                continue;
            }
            $values[$key] = trim($value);
        }
        $values += self::DEFAULTS;
        $selector = $values['selector'];
        if ($problem === '' && ($selector === '' || strlen($selector) > 1000)) {
            $problem = 'Say which agents: a selector such as all, group:lab or id:desk-* (at most 1000 characters).';
        }
        foreach (self::PACING as $key => [$low, $high]) {
            $text = $values[$key];
            if ($problem === '' && $text !== '' && (!preg_match('/^[0-9]{1,4}$/', $text) || (int) $text < $low || (int) $text > $high)) {
                $problem = ucfirst(str_replace('_', ' ', $key)) . " is a whole number from $low to $high.";
            }
        }
        return new self($values, $problem);
    }

    /** The admin API's run body (without reason and dry_run). */
    public function body(): array
    {
        $params = [];
        foreach ($this->values as $key => $value) {
            if (str_starts_with($key, 'p_') && $value !== '') {
                $params[substr($key, 2)] = $value;
            }
        }
        $body = ['selector' => $this->values['selector'], 'params' => (object) $params];
        foreach (self::PACING as $key => $_) {
            if ($this->values[$key] !== '') {
                $body[$key] = (int) $this->values[$key];
            }
        }
        return $body;
    }

    /** The input for one parameter spec: [type attribute or 'select', options, attributes]. */
    public static function input(array $spec): array
    {
        $type = (string) ($spec['type'] ?? 'text');
        return match ($type) {
            'int' => ['number', [], ['step' => '1', 'min' => $spec['min'] ?? null, 'max' => $spec['max'] ?? null]],
            'number' => ['number', [], ['step' => 'any', 'min' => $spec['min'] ?? null, 'max' => $spec['max'] ?? null]],
            'bool' => ['select', ['true' => 'yes', 'false' => 'no'], []],
            'choice' => ['select', array_combine(array_map('strval', $spec['choices'] ?? []), array_map('strval', $spec['choices'] ?? [])), []],
            default => ['text', [], ['maxlength' => $spec['max_chars'] ?? self::MAX_VALUE]],
        };
    }
}
