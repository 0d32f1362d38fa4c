"""The bench's database product: TechEmpower's single query and multiple queries on apiphant.db."""
