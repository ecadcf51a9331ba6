<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * The web's one way to act on the live system: the admin HTTP API, called from PHP with the token from
 * the configuration (it never reaches the browser), X-EMS-Operator naming the logged-in web user and X-EMS-Role their
 * web role (the broker stands behind at most operator for a person the web names).
 */
final class AdminApi
{
    public const TIMEOUT_S = 30;
    /** what the admin API accepts in X-EMS-Operator (bridges/admin_http/guard.py) */
    private const OPERATOR_NAME = '/^[A-Za-z0-9._@+-]+( [A-Za-z0-9._@+-]+)*$/';
    /** web action -> the admin API's URL action */
    public const ACTIONS = ['reboot' => 'Reboot', 'shutdown' => 'Shut down', 'update-check' => 'OS update check',
        'update-apply' => 'OS update apply'];

    private function __construct(private readonly string $url, private readonly string $token)
    {
    }

    public static function fromConfig(Config $config): ?self
    {
        $api = $config->adminApi();
        return $api === null ? null : new self(rtrim((string) $api['url'], '/'), (string) ($api['token'] ?? ''));
    }

    /** The name the audit trail shows for a web user: the display name if the API accepts it, else the user name. */
    public static function operatorName(array $user): string
    {
        foreach ([trim((string) $user['display_name']), (string) $user['username']] as $name) {
            if (strlen($name) <= 128 && preg_match(self::OPERATOR_NAME, $name)) {
                return $name;
            }
        }
        return 'web-user-' . (int) $user['id'];
    }

    /** [HTTP status, decoded JSON answer]; status 0 when the API could not be reached. */
    public function call(string $method, string $path, ?array $body, array $user): array
    {
        $headers = ['Authorization: Bearer ' . $this->token, 'X-EMS-Operator: ' . self::operatorName($user),
            'X-EMS-Role: ' . (in_array($user['role'] ?? '', ['viewer', 'operator', 'admin'], true) ? $user['role'] : 'viewer'),
            'Accept: application/json'];
        $options = ['method' => $method, 'ignore_errors' => true, 'timeout' => self::TIMEOUT_S, 'follow_location' => 0];
        if ($body !== null) {
            $options['content'] = json_encode($body, JSON_THROW_ON_ERROR);
            $headers[] = 'Content-Type: application/json';
        }
        $options['header'] = implode("\r\n", $headers);
        $http_response_header = [];
        $text = @file_get_contents($this->url . $path, false, stream_context_create(['http' => $options]));
        if ($text === false || !$http_response_header) {
            return [0, ['error' => 'the admin API did not answer', 'hint' => 'is `ems up` running with the admin API?']];
        }
        preg_match('#^HTTP/\S+ (\d{3})#', $http_response_header[0], $match);
        $answer = json_decode($text, true);
        return [(int) ($match[1] ?? 0), is_array($answer) ? $answer : ['error' => 'the admin API answered no JSON']];
    }
}
