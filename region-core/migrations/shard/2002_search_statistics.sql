-- Full-text search plans depend on how many posts the planner thinks match.
-- With the default statistics target, a rare word (in a few posts of a
-- million) is not among the tsvector's most common elements, the planner
-- guesses thousands of matches, and walks posts_city_live_recent newest-first
-- hoping to find 20 soon: it reads the whole city (seconds) to return a
-- handful. With a large target the rare words are in the statistics, the
-- estimate is right, and a rare search takes the GIN index (posts_city_search,
-- milliseconds) while a common one still walks the listing index and stops
-- after a page. Measured by `cityboard bench origin-read` (BENCHMARKS.md).
ALTER TABLE posts ALTER COLUMN search SET STATISTICS 10000;
-- Statistics as the new target sees them right away, not at the next
-- autovacuum.
ANALYZE posts (search);
